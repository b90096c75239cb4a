"""The environment layer: every stage gets its games from `make_vector_env` and
`make_frame_source`, which apply the one preprocessing contract in `preprocessing.py`."""

from __future__ import annotations

import numpy as np

from insight_cli.envs.base import Frame, FrameSource, StepResult, VectorEnv
from insight_cli.envs.preprocessing import MODES, EpisodeRules
from insight_cli.errors import UsageError
from insight_cli.games import GameSpec, get_game

BACKENDS = ("auto", "ale", "gymnasium")

__all__ = [
    "BACKENDS",
    "Frame",
    "FrameSource",
    "StepResult",
    "VectorEnv",
    "ego_states",
    "make_frame_source",
    "make_vector_env",
]


def _resolve(game: str | GameSpec, mode: str) -> tuple[GameSpec, EpisodeRules]:
    if mode not in MODES:
        raise UsageError(f"unknown env mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
    spec = game if isinstance(game, GameSpec) else get_game(game)
    return spec, EpisodeRules.for_mode(mode)


def make_vector_env(
    game: str | GameSpec, num_envs: int, seed: int = 0, mode: str = "train", backend: str = "auto"
) -> VectorEnv:
    """N copies of `game` with the paper's preprocessing; `env.reset()` seeds env i with seed + i
    and returns (num_envs, 4, 84, 84) uint8 observations.

    `mode="train"` ends episodes on a lost life and clips rewards; `mode="eval"` plays full
    games with raw scores and sticky actions (`STICKY_EVAL`); `mode="imitate"` (train's DAgger
    phase) is "train" with those sticky actions. `backend` picks ALE's C++ vector
    env ("ale", what "auto" uses for Atari) or gymnasium's SyncVectorEnv with Python wrappers
    ("gymnasium"); built-in games have their own vectorised implementation and ignore it.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise UsageError(f"num_envs must be a positive integer, got {num_envs!r}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown env backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    spec, rules = _resolve(game, mode)
    if spec.continuous:
        from insight_cli.envs.metadrive import MetaDriveVectorEnv

        return MetaDriveVectorEnv(num_envs, seed, spec.action_names)
    if spec.builtin:
        from insight_cli.envs.catch import CatchVectorEnv

        return CatchVectorEnv(num_envs, seed, spec.action_names)
    if backend == "gymnasium":
        from insight_cli.envs.atari import GymnasiumVectorEnv

        return GymnasiumVectorEnv(spec, num_envs, seed, rules)
    from insight_cli.envs.atari import AleVectorEnv

    return AleVectorEnv(spec, num_envs, seed, rules)


def make_frame_source(game: str | GameSpec, seed: int = 0, mode: str = "train", expert: bool = False) -> FrameSource:
    """One env of `game` that yields the full RGB frame and the exact training view together;
    with the same seed and actions its views equal env 0 of `make_vector_env`. `expert`: the
    simulator's own driver steers and actions are ignored (MetaDrive, for collecting frames)."""
    spec, rules = _resolve(game, mode)
    if spec.continuous:
        from insight_cli.envs.metadrive import MetaDriveFrameSource

        return MetaDriveFrameSource(seed, spec.action_names, expert)
    if spec.builtin:
        from insight_cli.envs.catch import CatchFrameSource

        return CatchFrameSource(seed, spec.action_names)
    from insight_cli.envs.atari import AtariFrameSource

    return AtariFrameSource(spec, seed, rules)


def ego_states(env, device):
    """(N, S) the env's (or frame source's) current ego states as a float tensor on the torch
    `device`; None for games without."""
    import torch  # the env layer itself needs no torch

    state = getattr(env, "ego_state", None)
    return (
        None if state is None else torch.from_numpy(np.array(state, np.float32)).reshape(-1, state.shape[-1]).to(device)
    )
