"""Where the verbs read and write by default: everything of a game lives under data/<Game>/
(relative to the working directory), so the verbs find each other's outputs without flags."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RUN_CHECKPOINT = "run.ckpt"  # in each run folder: what the later stages read


def game_dir(game_name: str) -> Path:
    return DATA / game_name


def dataset_dir(game_name: str) -> Path:
    """`insight segment`'s output."""
    return game_dir(game_name) / "dataset"


def perception_checkpoint(game_name: str) -> Path:
    """`insight pretrain`'s output."""
    return game_dir(game_name) / "perception.ckpt"


def runs_dir(game_name: str) -> Path:
    """`insight train`'s runs, one folder each."""
    return game_dir(game_name) / "runs"
