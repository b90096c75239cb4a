"""What every environment in insight returns, whatever runs the game."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np


class StepResult(NamedTuple):
    obs: np.ndarray  # (N, 4, 84, 84) uint8; for a finished env, the next episode's first obs
    reward: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool


class Frame(NamedTuple):
    rgb: np.ndarray  # (H, W, 3) uint8, the full-resolution screen (210x160 on Atari)
    stack: np.ndarray  # (4, 84, 84) uint8, exactly what the training env observes here


class VectorEnv(Protocol):
    """N copies of a game, reset automatically in the step that ends an episode."""

    num_envs: int
    seed: int
    action_meanings: list[str]

    def reset(self, seed: int | Sequence[int] | None = None) -> np.ndarray:
        """Reset all envs, env i seeded with seed + i, or with seed[i] given one seed per env
        (default: the seed the env was made with); returns (N, 4, 84, 84) uint8."""

    def step(self, actions: np.ndarray) -> StepResult: ...

    def close(self) -> None: ...


class FrameSource(Protocol):
    """One game stepped one action at a time, for dataset collection."""

    seed: int
    action_meanings: list[str]

    def reset(self, seed: int | None = None) -> Frame: ...

    def step(self, action: int) -> tuple[Frame, float, bool]:
        """Returns the next frame, the reward and whether the episode ended; when it ended,
        the frame is the first of the next episode."""

    def close(self) -> None: ...


def env_seeds(seed: int | Sequence[int], num_envs: int) -> np.ndarray:
    """(N,) the seed of each env for `VectorEnv.reset`: seed, seed + 1, ... or one given per env."""
    if isinstance(seed, (int, np.integer)):
        return np.arange(int(seed), int(seed) + num_envs, dtype=np.int64)
    seeds = np.asarray(seed, dtype=np.int64)
    if seeds.shape != (num_envs,):
        raise ValueError(f"reset got {seeds.size} seeds for {num_envs} envs")
    return seeds
