"""`insight extract-policy`: the EQL actor as short equations, their fidelity and exports (docs/design.md §10)."""

MAX_TERMS = 10  # terms per action by default, here and in `insight explain`: equations a person reads at a glance
