"""`insight segment`'s options (no heavy imports: the CLI reads them at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.options import check_bounds, device_option, game_option, option, seed_option

BACKENDS = ("auto", "classic", "fastsam", "sam", "simulator")
MAX_FRAMES = 10_000_000  # about 100 GB of frames; more is a slip of the keyboard, not a dataset


@dataclass
class SegmentConfig:
    game: str = game_option()
    frames: int = option(10_000, "Frames to collect (or to read from --input at most).", min=1)
    backend: str = option(
        "auto",
        "classic: colour background model, no weights; fastsam: FastSAM (ultralytics); sam: Segment Anything; "
        "simulator: the simulator's own object boxes (MetaDrive); auto: simulator for MetaDrive, else classic.",
        choices=BACKENDS,
    )
    checkpoint: Path | None = option(None, "Weights for fastsam (FastSAM-s.pt / FastSAM-x.pt) or sam (sam_vit_*.pth).")
    input: Path | None = option(
        None, "Segment a recording (video file or folder of PNG frames) instead of playing.", flags=("--input",)
    )
    policy: Path | None = option(
        None, "Play with a trained agent (a run.ckpt from `insight train`) instead of at random."
    )
    names: Path | None = option(None, 'TOML file renaming objects, e.g. obj7 = "bullet".')
    out: Path | None = option(None, "Dataset directory (default: data/<Game>/dataset).")
    force: bool = option(False, "Replace --out even if it is not an insight dataset (what is there is deleted).")
    device: str = device_option()
    seed: int = seed_option()
    background_frames: int = 256  # frames the classic backend's background model is fitted on

    def validate(self) -> None:
        check_bounds(self)
        if self.frames > MAX_FRAMES:  # here, not in Typer's bounds: a one-line error like every other
            raise UsageError(f"--frames must be between 1 and {MAX_FRAMES:,}, got {self.frames:,}")
