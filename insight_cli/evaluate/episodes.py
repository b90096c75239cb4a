"""Play full episodes with one of an agent's actors on evaluation envs and collect raw scores.

An actor here is a function from a batch of observations (and the envs' ego states, where the
game has them) to actions and the object coordinates it decided on, so the neural, the EQL and
the exported symbolic policy all play through the same loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from insight_cli.envs import ego_states, make_frame_source, make_vector_env
from insight_cli.evaluate.config import ACTORS
from insight_cli.games import GameSpec

# (B, 4, 84, 84) uint8 observations and (B, S) ego states or None -> (B,) actions (continuous:
# (B, A)) and (B, K, 4, 2) object coordinates
Actor = Callable[[torch.Tensor, torch.Tensor | None], tuple[np.ndarray, np.ndarray]]


class Step(NamedTuple):
    rgb: np.ndarray  # (H, W, 3) the full frame the actor saw
    action: int | np.ndarray  # continuous games: (A,)
    coordinates: np.ndarray  # (K, 4, 2) what the actor decided on
    score: float  # the episode's score before this step
    reward: float  # what the action earned
    state: np.ndarray | None  # (S,) the ego state, for games with one


def watch_episode(act: Actor, game: GameSpec, seed: int, device: torch.device, max_steps: int) -> Iterator[Step]:
    """One episode on a single env with full RGB frames (from the same start as env 0 of
    `play_episodes` with this seed), at most `max_steps` steps, for pictures and videos."""
    source = make_frame_source(game, seed=seed, mode="eval")
    frame, score = source.reset(), 0.0
    try:
        for _ in range(max_steps):
            state = ego_states(source, device)
            actions, coordinates = act(torch.from_numpy(frame.stack[None]).to(device), state)
            rgb, action = frame.rgb, actions[0] if game.continuous else int(actions[0])
            frame, reward, done = source.step(action)
            yield Step(rgb, action, coordinates[0], score, reward, None if state is None else state[0].cpu().numpy())
            score += reward
            if done:
                break
    finally:
        source.close()


class Episodes(NamedTuple):
    returns: list[float]  # raw game score of each episode, in the order they ended
    lengths: list[int]  # agent steps (each 4 frames)
    coordinates: np.ndarray | None  # (N, K, 4, 2) every state an actor decided on, if kept
    actions: np.ndarray | None  # (N,) the actions taken there (continuous: (N, A))
    arrived: list[bool] | None = None  # driving games: whether each episode reached its destination
    states: np.ndarray | None = None  # (N, S) the ego states there, if kept and the game has them


def agent_actor(agent, actor: str, symbolic=None) -> Actor:
    """The agent's `actor` ("neural", "eql", or "symbolic" with `symbolic` the extracted
    SymbolicPolicy over the coordinates the agent's perception predicts, and the ego state if
    the agent reads one), acting greedily."""
    if actor not in ACTORS:
        raise ValueError(f"unknown actor {actor!r}")

    @torch.no_grad()
    def act(obs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
        if actor == "symbolic":
            coordinates = agent.perception.object_coordinates(agent.perception(obs)).float().cpu().numpy()
            with_state = (state.cpu().numpy(),) if agent.config.state_size else ()
            actions = np.asarray(symbolic.act(coordinates, *with_state))
            return actions.reshape(len(coordinates), -1) if agent.config.continuous else actions.reshape(
                -1
            ), coordinates
        out = agent(obs, state if agent.config.state_size else None)
        return agent.greedy(out, actor).cpu().numpy(), out.coordinates.float().cpu().numpy()

    return act


def play_episodes(
    act: Actor,
    game: GameSpec,
    episodes: int,
    seed: int,
    device: torch.device,
    max_envs: int = 8,
    keep_states: bool = False,
    on_episode: Callable[[float], None] | None = None,
) -> Episodes:
    """`episodes` full games, at most `max_envs` at once (eval envs end every episode: they
    truncate at 108k frames).

    An env that finishes starts a new episode only while more are needed, so exactly the first
    `episodes` started are counted (no bias toward short ones).
    """
    num_envs = min(episodes, max_envs)
    env = make_vector_env(game, num_envs, seed=seed, mode="eval")
    obs = env.reset()
    returns, lengths = np.zeros(num_envs), np.zeros(num_envs, dtype=np.int64)
    started = num_envs
    finished: list[tuple[float, int]] = []
    active = np.ones(num_envs, dtype=bool)
    seen, taken, ego = [], [], []
    try:
        while active.any():
            state = ego_states(env, device)
            actions, coordinates = act(torch.from_numpy(obs).to(device), state)
            if keep_states:
                seen.append(coordinates[active])
                taken.append(actions[active])
                if state is not None:
                    ego.append(np.asarray(env.ego_state)[active])  # the host copy, not back from the device
            result = env.step(actions)
            returns += result.reward * active
            lengths += active
            done = (result.terminated | result.truncated) & active
            for index in np.flatnonzero(done):
                arrived = game.continuous and bool(env.arrived[index])
                finished.append((float(returns[index]), int(lengths[index]), arrived))
                if on_episode:
                    on_episode(float(returns[index]))
                returns[index], lengths[index] = 0.0, 0
                if started < episodes:
                    started += 1
                else:
                    active[index] = False
            obs = result.obs
    finally:
        env.close()
    return Episodes(
        [score for score, _, _ in finished],
        [length for _, length, _ in finished],
        np.concatenate(seen) if keep_states else None,
        np.concatenate(taken) if keep_states else None,
        [arrived for _, _, arrived in finished] if game.continuous else None,
        np.concatenate(ego) if ego else None,
    )
