"""`insight train`: PPO with neural guidance, an EQL actor and perception refinement (docs/design.md §9)."""
