"""`insight explain`: language explanations of the policy and of single decisions, checked for
faithfulness (docs/design.md §12)."""

# Defaults shared by `insight explain`, `insight pipeline` and their configs.
MAX_TOKENS = 512  # per answer: a model that loops at temperature 0 stops here instead of at the timeout
CONTEXT_TOKENS = 4096  # the server's context: prompt and answer must fit in it together
TIMEOUT = 120.0  # seconds per request: a 512-token answer from a small model on a CPU takes a minute or more
RETRIES = 3  # for connection errors, 429 and 5xx only: a timed-out request is never sent again
SIMULATE = 50  # held-out states the simulatability reader predicts
