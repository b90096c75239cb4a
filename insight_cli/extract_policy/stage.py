"""`insight extract-policy`: the run's EQL actor as one short equation per action, how often it
agrees with the actor (fidelity) and what it scores, exported as JSON, Markdown, LaTeX and a
numpy-only Python policy (DESIGN §5).

Fidelity is the share of states where the equations act like the EQL actor: the same choice,
or (continuous actions) every action value within ACTION_TOLERANCE of the actor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from insight_cli.dataset import load_dataset
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.extract_policy.export import policy_document, write_exports
from insight_cli.extract_policy.symbolic import Interface, SymbolicPolicy, extract, join, smallest_pruning, variables_for
from insight_cli.games import get_game
from insight_cli.pretrain.data import decode
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent

BATCH = 256
ACTION_TOLERANCE = 0.05  # continuous actions in [-1, 1] agree when no value differs by more


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
    held_out: np.ndarray  # (N, V) the EQL actor's inputs on the dataset's test split


def _validate(config: ExtractConfig) -> None:
    if config.threshold < 0:
        raise UsageError(f"--threshold must be at least 0, got {config.threshold}")
    if not 1 <= config.digits <= 15:
        raise UsageError(f"--digits must be between 1 and 15, got {config.digits}")
    if config.max_terms is not None and config.max_terms < 1:
        raise UsageError(f"--max-terms must be at least 1, got {config.max_terms}")
    if config.episodes < 0:
        raise UsageError(f"--episodes must be at least 0, got {config.episodes}")


def fidelity(policy: SymbolicPolicy, inputs: np.ndarray, actions: np.ndarray, where: str) -> dict:
    """How closely the policy acts like `actions` on (N, V) inputs: `<where>_fidelity`, the
    share of agreeing states, and for continuous actions `<where>_action_error`, the mean
    absolute difference of the action values."""
    if not len(actions):
        return {f"{where}_states": 0, f"{where}_fidelity": float("nan")}
    chosen = policy.choose(inputs)
    if not policy.continuous:
        return {f"{where}_states": len(actions), f"{where}_fidelity": float((chosen == actions).mean())}
    difference = np.abs(chosen - actions)
    return {f"{where}_states": len(actions), f"{where}_fidelity": float((difference.max(axis=1) <= ACTION_TOLERANCE).mean()),
            f"{where}_action_error": float(difference.mean())}


def interface(agent, checkpoint, game) -> Interface:
    """The variables and actions of the run's EQL actor."""
    state = game.state if agent.config.state_size else None
    variables = variables_for([o["name"] for o in checkpoint.meta["objects"]], state)
    return Interface(variables, list(checkpoint.meta["action_meanings"]), game.continuous)


@torch.no_grad()
def held_out_states(agent, checkpoint, dataset_path: Path, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The EQL actor's inputs (N, V) on the dataset's test split, and its greedy actions there."""
    dataset = load_dataset(dataset_path)
    if dataset.meta["fingerprint"] != checkpoint.meta["dataset_fingerprint"]:
        raise InsightError(f"{dataset_path} is not the dataset this run was trained with", hint="pass the right --dataset")
    states = dataset.states()
    if agent.config.state_size and states is None:
        raise InsightError(f"{dataset_path} has no ego states, which this run's EQL actor reads",
                           hint="re-create the dataset with this version's `insight segment`")
    slots = [{"track_id": o["track_id"], "name": o["name"]} for o in checkpoint.meta["objects"]]
    data = decode(dataset, slots, device)
    inputs, actions = [], []
    for rows in data.test_rows.split(BATCH):
        state = torch.from_numpy(states[rows.cpu().numpy()]).to(device) if agent.config.state_size else None
        out = agent(data.batch(rows)[0], state)
        inputs.append(join(out.coordinates.float().cpu().numpy(), None if state is None else state.cpu().numpy()))
        actions.append(agent.greedy(out, "eql").cpu().numpy())
    return np.concatenate(inputs), np.concatenate(actions)


def run(config: ExtractConfig) -> ExtractResult:
    _validate(config)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    agent, checkpoint = load_agent(path, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    actor = interface(agent, checkpoint, game)
    if config.max_terms is None:
        policy = extract(agent.eql, actor, config.threshold, config.digits)
    else:
        policy = smallest_pruning(agent.eql, actor, config.max_terms, config.digits, config.threshold)

    held_out, chosen = held_out_states(agent, checkpoint, Path(config.dataset or checkpoint.meta["dataset"]), device)
    agreement = fidelity(policy, held_out, chosen, "held_out")
    returns = {}
    if config.episodes:
        eql = play_episodes(agent_actor(agent, "eql"), game, config.episodes, config.seed, device, keep_states=True)
        symbolic = play_episodes(agent_actor(agent, "symbolic", policy), game, config.episodes, config.seed, device)
        agreement.update(fidelity(policy, join(eql.coordinates, eql.states), eql.actions, "rollout"))
        returns = {"eql": float(np.mean(eql.returns)), "symbolic": float(np.mean(symbolic.returns))}

    report = {"run": str(path), "fidelity": agreement, "returns": returns, "episodes": config.episodes,
              "max_terms": config.max_terms, "terms": dict(zip(actor.actions, policy.term_counts))}
    document = policy_document(policy, game.name, game.actions, [o["name"] for o in checkpoint.meta["objects"]], report)
    files = write_exports(Path(config.out or path.parent), policy, document)
    return ExtractResult(files, policy, agreement, returns, held_out)
