"""The observation contract shared by training, evaluation and dataset collection.

One preprocessing truth: the 84x84 stack stored with a dataset frame and the training env's
observation of the same emulator state are produced by the same code with these settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FRAME_SIZE = 84  # observations are FRAME_SIZE x FRAME_SIZE grayscale
STACK = 4  # frames per observation, oldest first; frame 4 is the current one
FRAME_SKIP = 4  # emulator frames per agent step, max-pooled over the last two
NOOP_MAX = 30  # up to this many no-op steps after every reset
MAX_EPISODE_FRAMES = 108_000  # 30 minutes of play at 60 Hz

Mode = Literal["train", "eval"]
MODES: tuple[str, ...] = ("train", "eval")


@dataclass(frozen=True)
class EpisodeRules:
    """What differs between training and evaluation (paper protocol)."""

    episodic_life: bool  # a lost life ends the episode
    clip_rewards: bool  # rewards are clipped to {-1, 0, 1}
    fire_reset: bool  # press FIRE after reset in games that need it

    @classmethod
    def for_mode(cls, mode: str) -> EpisodeRules:
        if mode == "train":
            return cls(episodic_life=True, clip_rewards=True, fire_reset=True)
        if mode == "eval":
            return cls(episodic_life=False, clip_rewards=False, fire_reset=True)
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
