"""`insight train`: PPO with neural guidance, an EQL actor and perception refinement (DESIGN §4)."""
