"""Catch: a built-in pixel game small enough to run every stage end to end on a CPU.

A 4x4 red ball falls from a random column at the top of an 84x84 screen; the agent slides a
12x3 white paddle along the bottom. +1 for a catch, -1 for a miss, 20 balls an episode
(about 260 steps, 13 per ball). Optimal play (move toward the ball's x) scores +20, random
play about -14. Each move shifts the paddle by half its width, so single actions matter
enough for PPO to learn the game in tens of thousands of steps.
The game is vectorised in numpy, so N envs cost little more than one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from insight_cli.envs.base import Frame, StepResult, env_seeds
from insight_cli.envs.preprocessing import FRAME_SIZE, STACK, gray_view

SCREEN = FRAME_SIZE
BALL_SIZE = 4
BALL_SPEED = 6  # pixels per step, downward
PADDLE_WIDTH, PADDLE_HEIGHT = 12, 3
PADDLE_ROW = SCREEN - PADDLE_HEIGHT - 1  # top row of the paddle
PADDLE_SPEED = 6
BALLS_PER_EPISODE = 20
BALL_RGB = (200, 72, 72)
PADDLE_RGB = (236, 236, 236)
MOVE = np.array([0, PADDLE_SPEED, -PADDLE_SPEED])  # NOOP, RIGHT, LEFT


def _gray(rgb: tuple[int, int, int]) -> int:
    """A colour's luma, as the training view of any game computes it."""
    return int(gray_view(np.full((FRAME_SIZE, FRAME_SIZE, 3), rgb, np.uint8))[0, 0])


_BALL_GRAY, _PADDLE_GRAY = _gray(BALL_RGB), _gray(PADDLE_RGB)


class CatchVectorEnv:
    """N games of Catch, reset in the step that ends an episode."""

    def __init__(self, num_envs: int, seed: int, action_meanings: list[str]):
        self.num_envs = num_envs
        self.seed = seed
        self.action_meanings = action_meanings
        self._rngs: list[np.random.Generator] = []
        self._ball_x = np.zeros(num_envs, dtype=np.int64)
        self._ball_y = np.zeros(num_envs, dtype=np.int64)
        self._paddle_x = np.zeros(num_envs, dtype=np.int64)
        self._balls_left = np.zeros(num_envs, dtype=np.int64)
        self._stack = np.zeros((num_envs, STACK, SCREEN, SCREEN), dtype=np.uint8)
        self._coords = np.arange(SCREEN)

    def reset(self, seed: int | Sequence[int] | None = None) -> np.ndarray:
        seeds = env_seeds(self.seed if seed is None else seed, self.num_envs)
        self._rngs = [np.random.default_rng(int(value)) for value in seeds]
        self._reset_where(np.ones(self.num_envs, dtype=bool))
        return self._stack.copy()

    def _reset_where(self, done: np.ndarray) -> None:
        self._paddle_x[done] = (SCREEN - PADDLE_WIDTH) // 2
        self._balls_left[done] = BALLS_PER_EPISODE
        self._spawn_ball(done)
        self._stack[done] = 0
        self._stack[done, -1] = self._render_gray()[done]

    def _spawn_ball(self, where: np.ndarray) -> None:
        for index in np.flatnonzero(where):
            self._ball_x[index] = self._rngs[index].integers(0, SCREEN - BALL_SIZE + 1)
        self._ball_y[where] = 0

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions)
        self._paddle_x = np.clip(self._paddle_x + MOVE[actions], 0, SCREEN - PADDLE_WIDTH)
        self._ball_y += BALL_SPEED
        landed = self._ball_y + BALL_SIZE > PADDLE_ROW
        caught = (self._ball_x + BALL_SIZE > self._paddle_x) & (self._ball_x < self._paddle_x + PADDLE_WIDTH)
        reward = np.where(landed, np.where(caught, 1.0, -1.0), 0.0).astype(np.float32)
        self._balls_left -= landed
        self._spawn_ball(landed)
        terminated = self._balls_left == 0
        self._stack = np.roll(self._stack, -1, axis=1)
        self._stack[:, -1] = self._render_gray()
        if terminated.any():
            self._reset_where(terminated)
        return StepResult(self._stack.copy(), reward, terminated, np.zeros(self.num_envs, dtype=bool))

    def state(self) -> dict:
        """Everything needed to continue exactly where the envs are (plain data, for checkpoints)."""
        return {
            "rngs": [rng.bit_generator.state for rng in self._rngs],
            "arrays": {
                name: getattr(self, f"_{name}").tolist() for name in ("ball_x", "ball_y", "paddle_x", "balls_left")
            },
            "stack": self._stack.tobytes(),
        }

    def restore(self, state: dict) -> None:
        for rng, rng_state in zip(self._rngs, state["rngs"]):
            rng.bit_generator.state = rng_state
        for name, values in state["arrays"].items():
            setattr(self, f"_{name}", np.array(values, dtype=np.int64))
        self._stack = np.frombuffer(state["stack"], dtype=np.uint8).reshape(self._stack.shape).copy()

    def _masks(self) -> tuple[np.ndarray, np.ndarray]:
        """Ball and paddle pixel masks, each (N, 84, 84) bool."""
        rows, cols = self._coords[None, :, None], self._coords[None, None, :]

        def box(x, y, height, width):
            x, y = x[:, None, None], y[:, None, None]
            return (rows >= y) & (rows < y + height) & (cols >= x) & (cols < x + width)

        paddle_y = np.full(self.num_envs, PADDLE_ROW)
        return box(self._ball_x, self._ball_y, BALL_SIZE, BALL_SIZE), box(
            self._paddle_x, paddle_y, PADDLE_HEIGHT, PADDLE_WIDTH
        )

    def _render_gray(self) -> np.ndarray:
        ball, paddle = self._masks()
        return (ball * _BALL_GRAY + paddle * _PADDLE_GRAY).astype(np.uint8)

    def render_rgb(self) -> np.ndarray:
        """The current screens in colour, (N, 84, 84, 3) uint8."""
        ball, paddle = self._masks()
        rgb = ball[..., None] * np.array(BALL_RGB) + paddle[..., None] * np.array(PADDLE_RGB)
        return rgb.astype(np.uint8)

    def close(self) -> None:
        pass


class CatchFrameSource:
    """Catch one step at a time, with the colour screen next to the training view."""

    def __init__(self, seed: int, action_meanings: list[str]):
        self.seed = seed
        self.action_meanings = action_meanings
        self._env = CatchVectorEnv(1, seed, action_meanings)

    def reset(self, seed: int | None = None) -> Frame:
        stack = self._env.reset(seed)
        return Frame(self._env.render_rgb()[0], stack[0])

    def step(self, action: int) -> tuple[Frame, float, bool]:
        result = self._env.step(np.array([action]))
        frame = Frame(self._env.render_rgb()[0], result.obs[0])
        return frame, float(result.reward[0]), bool(result.terminated[0])

    def close(self) -> None:
        pass
