"""`insight extract-policy`: the EQL actor as short equations, their fidelity and exports (DESIGN §5)."""
