"""insight: neuro-symbolic visual RL with language explanations (the INSIGHT method)."""

__version__ = "0.1.0"
