"""`insight extract-policy`: the run's EQL actor as one short equation per action, how often it
agrees with the actor (fidelity) and what it scores, exported as JSON, Markdown, LaTeX and a
numpy-only Python policy (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from insight_cli.dataset import load_dataset
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.extract_policy.export import policy_document, write_exports
from insight_cli.extract_policy.symbolic import SymbolicPolicy, extract, smallest_pruning
from insight_cli.games import get_game
from insight_cli.pretrain.data import decode
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent

BATCH = 256


@dataclass
class ExtractConfig:
    checkpoint: Path
    threshold: float = 0.01  # prune EQL weights (and expanded terms) smaller than this
    digits: int = 3  # significant digits of the printed coefficients
    max_terms: int | None = None  # search the least pruning (>= threshold) leaving each action this many terms
    episodes: int = 10  # fresh rollouts for rollout fidelity and returns; 0 skips them
    dataset: Path | None = None  # held-out states; default: the run's dataset
    out: Path | None = None  # directory of the exports; default: the run's directory
    device: str = "auto"
    seed: int = 0


@dataclass
class ExtractResult:
    files: list[Path]
    policy: SymbolicPolicy
    fidelity: dict
    returns: dict
    held_out: np.ndarray  # (N, K, 4, 2) the EQL actor's inputs on the dataset's test split


def _validate(config: ExtractConfig) -> None:
    if config.threshold < 0:
        raise UsageError(f"--threshold must be at least 0, got {config.threshold}")
    if not 1 <= config.digits <= 15:
        raise UsageError(f"--digits must be between 1 and 15, got {config.digits}")
    if config.max_terms is not None and config.max_terms < 1:
        raise UsageError(f"--max-terms must be at least 1, got {config.max_terms}")
    if config.episodes < 0:
        raise UsageError(f"--episodes must be at least 0, got {config.episodes}")


def agreement(policy: SymbolicPolicy, coordinates: np.ndarray, actions: np.ndarray) -> float:
    """Fraction of states (N, K, 4, 2) where the policy picks `actions` (N,)."""
    return float((policy.act(coordinates) == actions).mean()) if len(actions) else float("nan")


@torch.no_grad()
def held_out_states(agent, checkpoint, dataset_path: Path, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The EQL actor's inputs and choices on the dataset's test split."""
    dataset = load_dataset(dataset_path)
    if dataset.meta["fingerprint"] != checkpoint.meta["dataset_fingerprint"]:
        raise InsightError(f"{dataset_path} is not the dataset this run was trained with", hint="pass the right --dataset")
    slots = [{"track_id": o["track_id"], "name": o["name"]} for o in checkpoint.meta["objects"]]
    data = decode(dataset, slots, device)
    coordinates, actions = [], []
    for rows in data.test_rows.split(BATCH):
        out = agent(data.batch(rows)[0])
        coordinates.append(out.coordinates.float().cpu().numpy())
        actions.append(out.eql_logits.argmax(dim=-1).cpu().numpy())
    return np.concatenate(coordinates), np.concatenate(actions)


def run(config: ExtractConfig) -> ExtractResult:
    _validate(config)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    agent, checkpoint = load_agent(path, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    if game.continuous:
        raise InsightError(f"{path} drives {game.name} (continuous actions): extract-policy handles discrete games only for now",
                           hint="`insight evaluate` plays its neural and EQL actors")
    object_names = [o["name"] for o in checkpoint.meta["objects"]]
    actions = list(checkpoint.meta["action_meanings"])
    if config.max_terms is None:
        policy = extract(agent.eql, object_names, actions, config.threshold, config.digits)
    else:
        policy = smallest_pruning(agent.eql, object_names, actions, config.max_terms, config.digits, config.threshold)

    states, chosen = held_out_states(agent, checkpoint, Path(config.dataset or checkpoint.meta["dataset"]), device)
    fidelity = {"held_out_states": len(chosen), "held_out_fidelity": agreement(policy, states, chosen)}
    returns = {}
    if config.episodes:
        eql = play_episodes(agent_actor(agent, "eql"), game, config.episodes, config.seed, device, keep_states=True)
        symbolic = play_episodes(agent_actor(agent, "symbolic", policy), game, config.episodes, config.seed, device)
        fidelity.update(rollout_states=len(eql.actions), rollout_fidelity=agreement(policy, eql.coordinates, eql.actions))
        returns = {"eql": float(np.mean(eql.returns)), "symbolic": float(np.mean(symbolic.returns))}

    report = {"run": str(path), "fidelity": fidelity, "returns": returns, "episodes": config.episodes, "max_terms": config.max_terms,
              "terms": dict(zip(actions, policy.term_counts))}
    document = policy_document(policy, game.name, game.actions, object_names, report)
    files = write_exports(Path(config.out or path.parent), policy, document)
    return ExtractResult(files, policy, fidelity, returns, states)
