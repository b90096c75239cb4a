"""Atari environments: the ALE C++ vector env (fast path) and a plain-gymnasium fallback with
the same episode rules, plus the single-env frame source used to collect datasets."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from insight_cli.envs.base import Frame, StepResult, env_seeds
from insight_cli.envs.preprocessing import (
    FRAME_SIZE,
    FRAME_SKIP,
    MAX_EPISODE_FRAMES,
    NOOP_MAX,
    STACK,
    EpisodeRules,
)
from insight_cli.games import GameSpec

RAW_HEIGHT, RAW_WIDTH = 210, 160  # full-resolution Atari frame


def _ale_vector_env(game: GameSpec, num_envs: int, rules: EpisodeRules, **image):
    from ale_py.vector_env import AtariVectorEnv

    options = dict(img_height=FRAME_SIZE, img_width=FRAME_SIZE, grayscale=True, stack_num=STACK, maxpool=True)
    options.update(image)
    return AtariVectorEnv(
        game.ale_id,
        num_envs,
        frameskip=FRAME_SKIP,
        noop_max=NOOP_MAX,
        repeat_action_probability=rules.sticky_actions,
        max_num_frames_per_episode=MAX_EPISODE_FRAMES,
        episodic_life=rules.episodic_life,
        reward_clipping=rules.clip_rewards,
        use_fire_reset=rules.fire_reset,
        autoreset_mode=AutoresetMode.SAME_STEP,
        **options,
    )


class _GymVectorAdapter:
    """Our VectorEnv interface over a gymnasium-API vector env held in `self._env`."""

    _env: gym.vector.VectorEnv
    seed: int
    _seed_array = False  # ALE's C++ vector env takes the seeds as an array, gymnasium's as a list

    def reset(self, seed: int | Sequence[int] | None = None) -> np.ndarray:
        seeds = env_seeds(self.seed if seed is None else seed, self.num_envs)
        obs, _ = self._env.reset(seed=seeds if self._seed_array else seeds.tolist())
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        obs, reward, terminated, truncated, _ = self._env.step(np.asarray(actions, dtype=np.int64))
        return StepResult(obs, reward.astype(np.float32), terminated, truncated)

    def close(self) -> None:
        self._env.close()


class AleVectorEnv(_GymVectorAdapter):
    """N Atari games stepped by ALE's C++ threads, preprocessing done in C++."""

    _seed_array = True

    def __init__(self, game: GameSpec, num_envs: int, seed: int, rules: EpisodeRules):
        self.num_envs = num_envs
        self.seed = seed
        self.action_meanings = game.action_names
        self._env = _ale_vector_env(game, num_envs, rules)


class _FireReset(gym.Wrapper):
    """Press FIRE after every reset, for games that wait for it to start."""

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(1)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


def _gymnasium_env(game: GameSpec, rules: EpisodeRules) -> gym.Env:
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make(
        f"ALE/{game.name}-v5",
        frameskip=1,
        repeat_action_probability=rules.sticky_actions,
        full_action_space=False,
        max_num_frames_per_episode=MAX_EPISODE_FRAMES,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=NOOP_MAX,
        frame_skip=FRAME_SKIP,
        screen_size=FRAME_SIZE,
        terminal_on_life_loss=rules.episodic_life,
        grayscale_obs=True,
    )
    if rules.fire_reset and game.action_names[1:2] == ["FIRE"]:
        env = _FireReset(env)
    if rules.clip_rewards:
        env = gym.wrappers.TransformReward(env, np.sign)
    return gym.wrappers.FrameStackObservation(env, STACK, padding_type="zero")


class GymnasiumVectorEnv(_GymVectorAdapter):
    """The same episode rules with gymnasium's Python wrappers and SyncVectorEnv.

    Slower than the ALE fast path and not bit-identical to it (no-op counts come from a
    different random stream), but it works with any gymnasium build.
    """

    def __init__(self, game: GameSpec, num_envs: int, seed: int, rules: EpisodeRules):
        self.num_envs = num_envs
        self.seed = seed
        self.action_meanings = game.action_names
        self._env = gym.vector.SyncVectorEnv(
            [lambda: _gymnasium_env(game, rules)] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        )


class AtariFrameSource:
    """One game, one step at a time, yielding the full RGB frame and the exact training view.

    Two single ALE C++ envs run in lockstep from the same seed: one with the training
    preprocessing (so the stack is bit-identical to `AleVectorEnv`'s observation of env 0 for
    the same seed and actions) and one showing the raw last emulator frame in colour.
    """

    def __init__(self, game: GameSpec, seed: int, rules: EpisodeRules):
        self.seed = seed
        self.action_meanings = game.action_names
        self._view = _ale_vector_env(game, 1, rules)
        self._screen = _ale_vector_env(
            game, 1, rules, img_height=RAW_HEIGHT, img_width=RAW_WIDTH, grayscale=False, stack_num=1, maxpool=False
        )

    def reset(self, seed: int | None = None) -> Frame:
        seed = self.seed if seed is None else seed
        stack, _ = self._view.reset(seed=seed)
        screen, _ = self._screen.reset(seed=seed)
        return Frame(screen[0, -1], stack[0])

    def step(self, action: int) -> tuple[Frame, float, bool]:
        actions = np.array([action], dtype=np.int64)
        stack, reward, terminated, truncated, _ = self._view.step(actions)
        screen, *_ = self._screen.step(actions)
        return Frame(screen[0, -1], stack[0]), float(reward[0]), bool(terminated[0] or truncated[0])

    def close(self) -> None:
        self._view.close()
        self._screen.close()
