"""The observation contract shared by training, evaluation and dataset collection.

One preprocessing truth: the 84x84 stack stored with a dataset frame and the training env's
observation of the same emulator state are produced by the same code with these settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 84  # observations are FRAME_SIZE x FRAME_SIZE grayscale
STACK = 4  # frames per observation, oldest first; frame 4 is the current one
FRAME_SKIP = 4  # emulator frames per agent step, max-pooled over the last two
NOOP_MAX = 30  # up to this many no-op steps after every reset
MAX_EPISODE_FRAMES = 108_000  # 30 minutes of play at 60 Hz
# Evaluation repeats the previous action with this probability (Machado et al. 2018, the ALE v5
# default). Without it a greedy actor replays the same few games: Pong's 10 evaluation games were
# 3-4 distinct ones, each close to all or nothing (docs/design.md section 4).
STICKY_EVAL = 0.25

MODES: tuple[str, ...] = ("train", "eval", "imitate")


@dataclass(frozen=True)
class EpisodeRules:
    """What differs between training and evaluation (paper protocol)."""

    episodic_life: bool  # a lost life ends the episode
    clip_rewards: bool  # rewards are clipped to {-1, 0, 1}
    fire_reset: bool  # press FIRE after reset in games that need it
    sticky_actions: float = 0.0  # probability that the emulator repeats the previous action

    @classmethod
    def for_mode(cls, mode: str) -> EpisodeRules:
        if mode == "train":
            return cls(episodic_life=True, clip_rewards=True, fire_reset=True)
        if mode == "eval":
            return cls(episodic_life=False, clip_rewards=False, fire_reset=True, sticky_actions=STICKY_EVAL)
        if mode == "imitate":
            # train's DAgger phase: the EQL actor learns on the states it reaches under the sticky
            # actions it is judged by. PPO trains without them: with them its Pong return was
            # -14.45 at 3M env steps instead of +2.9 (run 13, docs/design.md section 9).
            return cls(episodic_life=True, clip_rewards=True, fire_reset=True, sticky_actions=STICKY_EVAL)
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def gray_view(rgb: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame as the training view sees it: (84, 84) uint8 luma (ITU-R 601
    weights, OpenCV's rounding), area-resampled when it is another size."""
    import cv2  # only the stages that draw frames need OpenCV

    luma = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    if luma.shape != (FRAME_SIZE, FRAME_SIZE):
        luma = cv2.resize(luma, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)
    return luma
