"""`insight explain`'s options (no heavy imports: the CLI reads them at start). The LLM options
are declared once here and reused by `insight pipeline`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.explain import CONTEXT_TOKENS, MAX_TOKENS, RETRIES, SIMULATE, TIMEOUT
from insight_cli.extract_policy import MAX_TERMS
from insight_cli.options import check_bounds, device_option, option, seed_option


def llm_option() -> object:
    return option(
        "offline",
        "offline (deterministic, from the equations) or a model name served by an OpenAI-compatible API, e.g. gpt-4.",
    )


def base_url_option() -> object:
    return option(None, "OpenAI-compatible server (default: OPENAI_BASE_URL, else api.openai.com).")


def timeout_option() -> object:
    return option(
        TIMEOUT,
        "Seconds to wait for each LLM answer; one that times out is not asked again (a local server would still be "
        "computing it).",
        above=0.0,
    )


def retries_option() -> object:
    return option(RETRIES, "LLM retries (connection errors, 429, 5xx), with exponential backoff.", min=0)


def max_tokens_option() -> object:
    return option(MAX_TOKENS, "Tokens per LLM answer at most; an answer cut off there is reported.", min=1)


def context_tokens_option() -> object:
    return option(
        CONTEXT_TOKENS,
        "The LLM server's context size: each prompt and its answer must fit (earlier answers of the policy dialogue "
        "are left out to fit).",
        min=2,
    )


def check_token_budget(max_tokens: int, context_tokens: int) -> None:
    if not 0 < max_tokens < context_tokens:
        raise UsageError(
            f"--max-tokens must be positive and less than --context-tokens ({context_tokens}), got {max_tokens}"
        )


@dataclass
class ExplainConfig:
    checkpoint: Path = option(help="A run.ckpt written by `insight train`.", argument=True)
    llm: str = llm_option()
    decisions: int = option(3, "Decisions to explain, sampled from a fresh greedy episode.", min=0)
    frame_index: int | None = option(None, "Explain the decision at this frame of the run's dataset instead.", min=0)
    policy: Path | None = option(None, "policy.json to explain (default: the run's; extracted now if missing).")
    max_terms: int = option(MAX_TERMS, "Terms per action when the policy has to be extracted first.", min=1)
    base_url: str | None = base_url_option()
    temperature: float = option(0.0, "LLM sampling temperature.", min=0.0, max=2.0)
    timeout: float = timeout_option()
    retries: int = retries_option()
    max_tokens: int = max_tokens_option()
    context_tokens: int = context_tokens_option()
    simulate: int = option(
        SIMULATE,
        "Held-out states in which a reader of the explanation alone predicts the action (simulatability; 0: skip).",
        min=0,
    )
    resume: bool = option(False, "Reuse the LLM answers a failed run saved in explanation.partial.json.")
    show_prompts: bool = option(False, "Print every prompt (they are saved in explanation.json either way).")
    out: Path | None = option(None, "Output directory (default: the run's directory).")
    device: str = device_option()
    seed: int = seed_option()

    def validate(self) -> None:
        check_bounds(self)
        check_token_budget(self.max_tokens, self.context_tokens)
        if self.resume and self.llm == "offline":
            raise UsageError("--resume continues an LLM explanation; --llm offline saves no answers to resume")
