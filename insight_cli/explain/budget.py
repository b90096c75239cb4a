"""How many tokens a prompt takes, and fitting a conversation into the server's context.

Until the server has counted a prompt, its tokens are estimated as characters / CHARS_PER_TOKEN
plus MESSAGE_TOKENS per message. English prose runs about 4 characters a token in GPT and Llama
tokenizers; identifiers and numbers (x_paddle_4**2, +0.031) run fewer, so 3 errs on the safe
side. Each usage.prompt_tokens the server reports corrects the ratio, only ever toward more
tokens a character: an estimate that fits then still fits.
"""

from __future__ import annotations

import math

from insight_cli.errors import InsightError

CHARS_PER_TOKEN = 3.0
MESSAGE_TOKENS = 4  # what a chat template adds per message: role markers, separators


def _characters(messages: list[dict]) -> int:
    return sum(len(message["content"]) for message in messages)


class TokenBudget:
    """Prompts must leave room for the answer: prompt + max_tokens <= context_tokens."""

    def __init__(self, context_tokens: int):
        self.context_tokens = context_tokens
        self.chars_per_token = CHARS_PER_TOKEN

    def estimate(self, messages: list[dict]) -> int:
        return math.ceil(_characters(messages) / self.chars_per_token) + MESSAGE_TOKENS * len(messages)

    def measured(self, messages: list[dict], prompt_tokens: int) -> None:
        """The server counted `prompt_tokens` for `messages`."""
        text_tokens = prompt_tokens - MESSAGE_TOKENS * len(messages)
        if text_tokens > 0:
            self.chars_per_token = min(self.chars_per_token, _characters(messages) / text_tokens)

    def fit(self, messages: list[dict], max_tokens: int, what: str) -> tuple[list[dict], int]:
        """`messages` (a system message, then user and assistant turns, the last a question)
        without as many of the oldest exchanges as it takes to fit, and how many were left out.
        A prompt that cannot fit even with none of them is a one-line error naming the budget."""
        limit = self.context_tokens - max_tokens
        head, turns, left_out = messages[:1], messages[1:], 0
        while self.estimate(head + turns) > limit and len(turns) > 1:
            turns, left_out = turns[2:], left_out + 1  # one question and its answer
        needed = self.estimate(head + turns)
        if needed > limit:
            raise InsightError(
                f"{what} takes about {needed:,} tokens, more than the {limit:,} of --context-tokens "
                f"{self.context_tokens:,} left after {max_tokens:,} for the answer",
                hint="raise --context-tokens if the server's context is larger, lower --max-tokens, "
                "or extract shorter equations (--max-terms)",
            )
        return head + turns, left_out
