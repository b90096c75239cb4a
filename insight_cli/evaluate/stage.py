"""`insight evaluate`: full episodes with one of the run's actors, raw game scores and their
spread, a per-episode table and optionally a video with the predicted objects drawn (docs/design.md §11)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from insight_cli.evaluate.config import EvaluateConfig
from insight_cli.evaluate.episodes import agent_actor, play_episodes, watch_episode
from insight_cli.files import atomic_output, ensure_writable, write_atomically
from insight_cli.games import get_game
from insight_cli.pictures import caption, mark_points, upscale, write_video
from insight_cli.progress import progress_bar
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent


@dataclass
class EvaluateResult:
    summary: dict
    files: list[Path]


def run(config: EvaluateConfig) -> EvaluateResult:
    config.validate()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    agent, checkpoint = load_agent(path, device, require_eql=config.actor != "neural")
    game = get_game(checkpoint.meta["game"])
    object_names = [o["name"] for o in checkpoint.meta["objects"]]
    symbolic = None
    if config.actor == "symbolic":  # the equations as data, evaluated here: policy.py is never imported
        from insight_cli.extract_policy.export import read_policy_for
        from insight_cli.extract_policy.stage import interface

        symbolic = read_policy_for(
            Path(config.policy or path.parent / "policy.json"), game.name, interface(agent, checkpoint, game)
        )
    act = agent_actor(agent, config.actor, symbolic)
    out = Path(config.out or path.parent / "evaluation")
    ensure_writable(out / f"{config.actor}.json")  # before the episodes, not after

    with progress_bar("episodes") as progress:
        task = progress.add_task(f"evaluate {config.actor}", total=config.episodes)
        episodes = play_episodes(
            act,
            game,
            config.episodes,
            config.seed,
            device,
            max_envs=config.num_envs,
            on_episode=lambda _: progress.advance(task),
        )
    returns = np.asarray(episodes.returns)
    summary = {
        "run": str(path),
        "game": game.name,
        "actor": config.actor,
        "episodes": len(returns),
        "seed": config.seed,
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "mean_length": float(np.mean(episodes.lengths)),
    }
    if episodes.arrived is not None:
        summary["success_rate"] = float(np.mean(episodes.arrived))
    files = []
    if config.video:
        video_path = out / f"{config.actor}.mp4"
        summary["video_return"] = record_video(
            video_path, act, game, object_names, config.seed, config.video_steps, device
        )
        files.append(video_path)
    table = pa.table({"episode": list(range(len(returns))), "return": episodes.returns, "length": episodes.lengths})
    with atomic_output(out / f"{config.actor}_episodes.parquet") as stream:
        pq.write_table(table, stream)
    files.append(out / f"{config.actor}_episodes.parquet")
    files.append(write_atomically(out / f"{config.actor}.json", json.dumps(summary, indent=2)))
    return EvaluateResult(summary, files)


def _action_text(game, action) -> str:
    if game.continuous:
        return "  ".join(f"{name} {value:+.2f}" for name, value in zip(game.action_names, action))
    return game.action_names[action]


def record_video(
    path: Path, act, game, object_names: list[str], seed: int, max_steps: int, device: torch.device
) -> float:
    """One greedy episode (from the same start as the first evaluation episode) as an mp4 with
    each present object's predicted centre and name drawn on the full frame; returns its score."""
    canvases, score = [], 0.0
    for step in watch_episode(act, game, seed, device, max_steps):
        current = step.coordinates[:, -1]  # (K, 2) newest frame
        present = np.flatnonzero(current.any(axis=-1))
        canvas = mark_points(upscale(step.rgb), current[present], [object_names[i] for i in present])
        canvases.append(caption(canvas, f"{_action_text(game, step.action)}  score {step.score:g}"))
        score = step.score + step.reward
    write_video(path, canvases)
    return score
