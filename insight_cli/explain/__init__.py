"""`insight explain`: language explanations of the policy and of single decisions, checked for faithfulness (DESIGN §6)."""
