"""`insight pretrain`'s options (no heavy imports: the CLI reads them at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.options import check_bounds, device_option, game_option, option, seed_option
from insight_cli.perception import ENCODERS, MAX_OBJECTS


@dataclass
class PretrainConfig:
    game: str = game_option()
    dataset: Path | None = option(None, "Dataset from `insight segment` (default: data/<Game>/dataset).")
    epochs: int = option(30, "Passes over the train split.", min=1)
    batch_size: int = option(32, "Stacks per gradient step.", min=1)
    lr: float = option(3e-4, "Adam learning rate (paper: 3e-4).", above=0.0)
    n_objects: str = option(
        "auto", f"Object slots K: auto = one per dataset track (at most {MAX_OBJECTS}), or a number >= the tracks."
    )
    min_seen: float = option(
        0.0,
        "Give a slot only to tracks seen in at least this share of the frames (0: every track; the cpu preset: 0.1, "
        "which drops flickering score digits).",
        min=0.0,
        max=1.0,
    )
    hidden: int = option(2048, "Width of the encoder vector (paper: 2048; the cpu preset: 256).", min=1)
    encoder: str = option(
        "insight",
        "Convolutions: insight (the paper's 5x5 stack) or nature (the DQN Atari CNN, about 10x faster on a CPU).",
        choices=ENCODERS,
    )
    out: Path | None = option(None, "Checkpoint to write (default: data/<Game>/perception.ckpt).")
    resume: bool = option(False, "Continue the interrupted run saved next to --out.")
    device: str = device_option()
    seed: int = seed_option()
    weight_decay: float = 1e-4
    threshold: float = 0.5
    max_shift: int = 8  # pixels (of 84) the augmentation may translate a stack

    def validate(self) -> None:
        check_bounds(self)
        if self.n_objects != "auto" and not str(self.n_objects).isdigit():
            raise UsageError(f"--n-objects must be auto or a positive integer, got {self.n_objects!r}")
