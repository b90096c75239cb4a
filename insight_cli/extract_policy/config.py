"""`insight extract-policy`'s options (no heavy imports: the CLI reads them at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.extract_policy import MAX_TERMS
from insight_cli.options import check_bounds, device_option, option, seed_option

FITS = ("auto", "prune", "refit")


def term_budget(value) -> int | None:
    """--max-terms: a positive number, or none."""
    import typer

    text = str(value).strip().lower()
    if text == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"expected a number of terms (at least 1) or none, got {value!r}")
    return int(text)


@dataclass
class ExtractConfig:
    checkpoint: Path = option(help="A run.ckpt written by `insight train`.", argument=True)
    max_terms: int | None = option(
        MAX_TERMS,
        "Terms per action at most (the least pruning that fits, or a refit). none: the whole network pruned at "
        "--threshold, however long (an expansion that could pass 100,000 terms is refused).",
        min=1,
        parser=term_budget,
        metavar="N|none",
    )
    fit: str = option(
        "auto",
        "prune: the pruned EQL network; refit: equations fitted to the EQL actor's decisions (DAgger-style, on "
        "states they visit); auto: refit when the pruned network's fidelity is below --min-fidelity.",
        choices=FITS,
    )
    min_fidelity: float = option(
        0.95,
        "With --fit auto, the fidelity (held-out and rollouts, the lower) the pruned network must reach.",
        min=0.0,
        max=1.0,
    )
    refit_rounds: int = option(
        3, "DAgger rounds of a refit: play the equations, label the states with the EQL actor, refit.", min=0
    )
    threshold: float = option(
        0.01, "Prune EQL weights, and expanded terms, smaller than this (the least pruning tried).", min=0.0
    )
    digits: int = option(3, "Significant digits of the coefficients.", min=1, max=15)
    episodes: int = option(
        2,
        "Fresh episodes for each measured set of equations (rollout fidelity and return), the EQL actor and each "
        "refit round (0: skip rollouts).",
        min=0,
    )
    max_steps: int = option(
        500, "Agent steps per rollout episode at most (a cut episode's return is its score so far).", min=1
    )
    dataset: Path | None = option(None, "Dataset whose test split gives held-out states (default: the run's).")
    out: Path | None = option(None, "Output directory (default: the run's directory).")
    device: str = device_option()
    seed: int = seed_option()

    def validate(self) -> None:
        check_bounds(self)
        if self.fit == "refit" and self.max_terms is None:
            raise UsageError("--fit refit needs a term budget", hint="pass --max-terms N")
