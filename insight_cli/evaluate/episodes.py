"""Play full episodes with an agent's actor on evaluation envs and collect raw scores."""

from __future__ import annotations

import numpy as np
import torch

from insight_cli.envs import make_vector_env
from insight_cli.games import GameSpec


@torch.no_grad()
def play_episodes(agent, game: GameSpec, episodes: int, seed: int, device: torch.device, actor: str = "eql",
                  max_envs: int = 8, max_steps: int = 30_000) -> list[float]:
    """Raw returns of `episodes` full games, the actor picking its most likely action.

    Envs run in parallel (at most max_envs); an env that finishes starts a new episode only if
    more are still needed, so every episode counted was started in order.
    """
    num_envs = min(episodes, max_envs)
    env = make_vector_env(game, num_envs, seed=seed, mode="eval")
    obs = env.reset()
    returns = np.zeros(num_envs)
    started = num_envs
    finished: list[float] = []
    active = np.ones(num_envs, dtype=bool)
    for _ in range(max_steps):
        out = agent(torch.from_numpy(obs).to(device))
        logits = out.eql_logits if actor == "eql" else out.neural_logits
        result = env.step(logits.argmax(dim=-1).cpu().numpy())
        returns += result.reward * active
        done = (result.terminated | result.truncated) & active
        for index in np.flatnonzero(done):
            finished.append(float(returns[index]))
            returns[index] = 0.0
            if started < episodes:
                started += 1
            else:
                active[index] = False
        if not active.any():
            break
        obs = result.obs
    env.close()
    return finished[:episodes]
