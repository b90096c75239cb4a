"""Short fresh episodes played by the EQL actor or by equations, with the EQL actor's decision
recorded in every state visited: the rollout fidelity of equations, their return, and the
states a refit learns from.

Unlike evaluate's full games, an episode here ends after `max_steps` agent steps (its return
is the score so far), so a trade-off of a dozen equations costs seconds on Pong, not minutes.
Each env plays one episode; the EQL actor and every set of equations start from the same
states for the same seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from insight_cli.envs import VectorEnv, make_vector_env
from insight_cli.evaluate.episodes import ego_states
from insight_cli.extract_policy.symbolic import SymbolicPolicy, join
from insight_cli.games import GameSpec

MAX_ENVS = 8  # episodes played at once


class Rollout(NamedTuple):
    returns: np.ndarray  # (E,) each episode's score, up to its end or its last allowed step
    inputs: np.ndarray  # (N, V) every state decided on, as policy inputs (see `join`)
    actions: np.ndarray  # (N,) what the player did there (continuous: (N, A))
    labels: np.ndarray  # (N,) what the EQL actor would have done (continuous: (N, A))


class Player:
    """Plays `episodes` episodes of at most `max_steps` steps each, by equations or by the EQL
    actor, on envs made once and reset for each rollout (making ALE's vector env costs about
    as much as a hundred steps). Close it, or use it as a context manager."""

    def __init__(self, agent, game: GameSpec, episodes: int, max_steps: int, device: torch.device):
        self.agent, self.game, self.episodes, self.max_steps, self.device = agent, game, episodes, max_steps, device
        self._envs: dict[int, VectorEnv] = {}

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def _env(self, count: int) -> VectorEnv:
        if count not in self._envs:
            self._envs[count] = make_vector_env(self.game, count, mode="eval")
        return self._envs[count]

    @torch.no_grad()
    def play(self, policy: SymbolicPolicy | None, seed: int) -> Rollout:
        """The episodes from envs seeded with seed, seed + 1, ..., played by the equations
        `policy` or, if None, by the EQL actor itself."""
        agent, returns, inputs, actions, labels = self.agent, [], [], [], []
        for first in range(0, self.episodes, MAX_ENVS):
            count = min(MAX_ENVS, self.episodes - first)
            env = self._env(count)
            obs, score, playing = env.reset(seed=seed + first), np.zeros(count), np.ones(count, dtype=bool)
            for _ in range(self.max_steps):
                state = ego_states(env, self.device)
                out = agent(torch.from_numpy(obs).to(self.device), state if agent.config.state_size else None)
                seen = join(out.coordinates.float().cpu().numpy(),
                            state.cpu().numpy() if agent.config.state_size else None)
                eql = agent.greedy(out, "eql").cpu().numpy()
                chosen = eql if policy is None else np.asarray(policy.choose(seen))
                inputs.append(seen[playing])
                actions.append(chosen[playing])
                labels.append(eql[playing])
                result = env.step(chosen)
                score += result.reward * playing
                playing &= ~(result.terminated | result.truncated)
                if not playing.any():
                    break
                obs = result.obs
            returns.append(score)
        return Rollout(np.concatenate(returns), np.concatenate(inputs), np.concatenate(actions), np.concatenate(labels))
