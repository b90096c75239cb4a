"""Short fresh episodes played by the EQL actor or by equations, with the EQL actor's decision
recorded in every state visited: the rollout fidelity of equations, their return, and the
states a refit learns from.

Unlike evaluate's full games, an episode here ends after `max_steps` agent steps (its return
is the score so far), so a trade-off of a dozen equations costs seconds on Pong, not minutes.
Each env plays one episode; the EQL actor and every set of equations start from the same
states for the same seed, and several of them play at once (`Player.play_all`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from insight_cli.envs import VectorEnv, ego_states, make_vector_env
from insight_cli.extract_policy.symbolic import SymbolicPolicy, join
from insight_cli.games import GameSpec

MAX_ENVS = 32  # episodes played at once
MAX_DRIVING_ENVS = 8  # MetaDrive: each env is a simulator process


class Rollout(NamedTuple):
    returns: np.ndarray  # (E,) each episode's score, up to its end or its last allowed step
    inputs: np.ndarray  # (N, V) every state decided on, as policy inputs (see `join`)
    actions: np.ndarray  # (N,) what the player did there (continuous: (N, A))
    labels: np.ndarray  # (N,) what the EQL actor would have done, as an effect (GameSpec.effects; continuous: (N, A))


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

    def play(self, policy: SymbolicPolicy | None, seed: int) -> Rollout:
        """The episodes from envs seeded with seed, seed + 1, ..., played by the equations
        `policy` or, if None, by the EQL actor itself."""
        return self.play_all([policy], seed)[0]

    @torch.no_grad()
    def play_all(self, policies: list[SymbolicPolicy | None], seed: int) -> list[Rollout]:
        """`play` for several policies at once: each gets its own envs, from the same seeds, and
        one perception pass serves every env each step (a trade-off's dozen rollouts cost
        little more than one: the CNN and the emulators run batched)."""
        agent, episodes = self.agent, self.episodes
        results: list[list[tuple]] = [[] for _ in policies]
        plays = [(index, episode) for index in range(len(policies)) for episode in range(episodes)]
        most = MAX_DRIVING_ENVS if self.game.continuous else MAX_ENVS
        for first in range(0, len(plays), most):
            batch = plays[first : first + most]
            env = self._env(len(batch))
            owner = np.array([index for index, _ in batch])
            obs = env.reset(seed=[seed + episode for _, episode in batch])
            score, playing = np.zeros(len(batch)), np.ones(len(batch), dtype=bool)
            steps = []
            for _ in range(self.max_steps):
                state = ego_states(env, self.device)
                out = agent(torch.from_numpy(obs).to(self.device), state if agent.config.state_size else None)
                seen = join(
                    out.coordinates.float().cpu().numpy(), state.cpu().numpy() if agent.config.state_size else None
                )
                eql = agent.greedy(out, "eql").cpu().numpy()
                chosen = eql.copy()
                for index in np.unique(owner):
                    if policies[index] is not None:
                        mine = owner == index
                        chosen[mine] = np.asarray(policies[index].choose(seen[mine])).reshape(chosen[mine].shape)
                label = eql if self.game.continuous else self.game.effects[eql]
                steps.append((seen[playing], chosen[playing], label[playing], owner[playing]))
                result = env.step(chosen)
                score += result.reward * playing
                playing &= ~(result.terminated | result.truncated)
                if not playing.any():
                    break
                obs = result.obs
            for index in np.unique(owner):
                mine = [
                    (inputs[who == index], taken[who == index], eql[who == index]) for inputs, taken, eql, who in steps
                ]
                results[index].append((score[owner == index], *(np.concatenate(column) for column in zip(*mine))))
        return [Rollout(*(np.concatenate(column) for column in zip(*parts))) for parts in results]
