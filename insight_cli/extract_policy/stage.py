"""`insight extract-policy`: the run's EQL actor as one short equation per action, how often it
agrees with the actor (fidelity) and what it scores, exported as JSON, Markdown, LaTeX and a
numpy-only Python policy (docs/design.md §10), with the trade-off between length and fidelity.

By default each action gets at most `max_terms` terms, over the variables that matter (see
`relevance`): the least pruning of the network that fits the budget, or, where those equations
agree with the actor too rarely, equations refitted to the actor's decisions (see `refit`) on
the dataset's training states and, DAgger-style, on states the equations themselves visit.
Fidelity is always measured on states no fit has seen: the dataset's held-out split and fresh
rollouts from other seeds. `max_terms=None` expands the whole network pruned at `threshold`.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from insight_cli.dataset import load_dataset
from insight_cli.errors import InsightError
from insight_cli.extract_policy.config import ExtractConfig
from insight_cli.extract_policy.export import policy_document, write_exports
from insight_cli.extract_policy.refit import refit
from insight_cli.extract_policy.relevance import Focus, focus, fold
from insight_cli.extract_policy.rollouts import Player
from insight_cli.extract_policy.symbolic import (
    SEARCH_TERMS,
    Interface,
    PruningSearch,
    States,
    SymbolicPolicy,
    extract,
    extract_within,
    join,
    variables_for,
)
from insight_cli.extract_policy.tradeoff import BUDGETS, Judge, plot_bytes, row, table_bytes, worse_fidelity
from insight_cli.games import get_game
from insight_cli.perception.data import decode, slots_of
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent
from insight_cli.train.eql import EqlActor

BATCH = 256
FIT_STATES = 4000  # training states of the dataset a refit starts from, at most
FIT_SEEDS = 100_000  # refit rollouts play from seed + this, never the seeds fidelity is measured on


@dataclass
class ExtractResult:
    files: list[Path]
    policy: SymbolicPolicy
    fidelity: dict
    returns: dict  # "eql" and "symbolic" (the equations), with episodes
    held_out: np.ndarray  # (N, V) the EQL actor's inputs on the dataset's test split
    tradeoff: list[dict]  # rows of policy_tradeoff.parquet
    left_out: dict[str, str]  # object, ego state value or variable -> why the equations do not mention it
    same_effect: dict[str, str]  # action -> the action fidelity counts it as (the same effect in this game)


def interface(agent, checkpoint, game) -> Interface:
    """The variables and actions of the run's EQL actor."""
    state = game.state if agent.config.state_size else None
    variables = variables_for([o["name"] for o in checkpoint.meta["objects"]], state)
    return Interface(variables, list(checkpoint.meta["action_meanings"]), game.continuous)


@torch.no_grad()
def eql_decisions(eql: EqlActor, inputs: np.ndarray, continuous: bool, effects: np.ndarray | None = None) -> np.ndarray:
    """What the EQL actor does on (N, V) inputs, as the agent's greedy actor: (N,) choices (as
    `effects`, GameSpec.effects, where given), or (N, A) actions tanh(mean)."""
    device = next(eql.parameters()).device
    scores = eql(torch.as_tensor(np.asarray(inputs), dtype=torch.float32, device=device)).float()
    if continuous:
        return torch.tanh(scores).cpu().numpy()
    choices = scores.argmax(dim=-1).cpu().numpy()
    return choices if effects is None else effects[choices]


@torch.no_grad()
def dataset_states(
    agent, checkpoint, dataset_path: Path, device: torch.device, seed: int = 0, effects: np.ndarray | None = None
) -> tuple[States, States]:
    """The EQL actor's inputs and decisions (as `effects`, where given) on the dataset's test
    split (through the perception CNN, as the agent sees them), and on up to FIT_STATES training
    states (from the dataset's own object boxes: no CNN, so they cost nothing)."""
    dataset = load_dataset(dataset_path)
    if dataset.meta["fingerprint"] != checkpoint.meta["dataset_fingerprint"]:
        raise InsightError(
            f"{dataset_path} is not the dataset this run was trained with", hint="pass the right --dataset"
        )
    states = dataset.states()
    if agent.config.state_size and states is None:
        raise InsightError(
            f"{dataset_path} has no ego states, which this run's EQL actor reads",
            hint="re-create the dataset with this version's `insight segment`",
        )
    slots = slots_of(checkpoint.meta)
    data = decode(dataset, slots, device)

    def ego(rows: np.ndarray) -> np.ndarray | None:
        return states[rows] if agent.config.state_size else None

    inputs = []
    for rows in data.test_rows.split(BATCH):
        state = ego(rows.cpu().numpy())
        out = agent(data.batch(rows)[0], None if state is None else torch.from_numpy(state).to(device))
        inputs.append(join(out.coordinates.float().cpu().numpy(), state))
    inputs = np.concatenate(inputs)
    train_rows = data.train_rows.cpu().numpy()
    if len(train_rows) > FIT_STATES:
        train_rows = np.sort(np.random.default_rng(seed).choice(train_rows, FIT_STATES, replace=False))
    fit_inputs = join(data.coordinates[torch.as_tensor(train_rows, device=device)].cpu().numpy(), ego(train_rows))
    decide = partial(eql_decisions, agent.eql, continuous=agent.config.continuous, effects=effects)
    return States(inputs, decide(inputs)), States(fit_inputs, decide(fit_inputs))


def held_out_states(agent, checkpoint, dataset_path: Path, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The EQL actor's inputs (N, V) on the dataset's test split, and its greedy actions there."""
    return dataset_states(agent, checkpoint, dataset_path, device)[0]


def pruned_policies(eql: EqlActor, actor: Interface, held: Focus, budgets: list[int], config: ExtractConfig) -> dict:
    """budget -> the least-pruned network (without the left-out variables) within it, where one is."""
    search = PruningSearch(fold(eql, held.held), actor, config.digits, config.threshold)
    found = {budget: search.fitting(budget) for budget in budgets}
    return {budget: policy for budget, policy in found.items() if policy is not None}


def refitted_policies(
    actor: Interface, held: Focus, fit_states: States, budgets: list[int], player: Player | None, config: ExtractConfig
) -> dict:
    """budget -> equations fitted to the actor's decisions: first on the dataset's training
    states, then each round also on the states the budget's equations visit (labelled with
    the actor's decisions there); the last fit, for every budget, on all of them."""
    kept = [index for index in range(len(actor.variables)) if index not in held.held]
    inputs, decisions = fit_states
    for round_ in range(config.refit_rounds if player else 0):
        (policy,) = refit(inputs, decisions, kept, actor, [config.max_terms], config.digits)
        visited = player.play(policy, config.seed + FIT_SEEDS + round_ * config.episodes)
        inputs, decisions = np.concatenate([inputs, visited.inputs]), np.concatenate([decisions, visited.labels])
    return dict(zip(sorted(budgets), refit(inputs, decisions, kept, actor, budgets, config.digits)))


def choose(pruned: SymbolicPolicy | None, refitted: SymbolicPolicy | None, judge: Judge) -> SymbolicPolicy:
    """The more faithful of the two (the pruned network on a tie: it is the actor itself)."""
    candidates = [policy for policy in (pruned, refitted) if policy is not None]
    return max(candidates, key=lambda policy: worse_fidelity(judge(policy)))


def candidates(
    config: ExtractConfig, eql: EqlActor, actor: Interface, fit_states: States, player: Player | None, judge: Judge
) -> tuple[Focus, list[tuple[SymbolicPolicy, int | None]], SymbolicPolicy]:
    """What to leave out, the equations of the trade-off with their budgets (None: the whole
    pruned network, where it is small enough to expand within the search's limit), and the
    chosen ones. A refit is made only where asked for or where pruning falls short at the
    budget. Without a player (no episodes) nothing is played: refits learn from `fit_states`."""
    budgets = sorted(set(BUDGETS) | ({config.max_terms} if config.max_terms else set()))
    if config.max_terms is None:  # on request: the exact expansion, refused if hopeless, nothing left out
        left_out = Focus({}, {})
        full = extract(eql, actor, config.threshold, config.digits)
    else:
        decide = partial(eql_decisions, eql, continuous=actor.continuous, effects=judge.effects)
        left_out = focus(decide, fit_states.inputs, actor.variables, actor.continuous)
        full = extract_within(eql, actor, config.threshold, config.digits, SEARCH_TERMS)
    pruned = pruned_policies(eql, actor, left_out, budgets, config) if config.fit != "refit" else {}
    refitted, chosen = {}, full
    if config.max_terms is not None:
        if config.fit == "prune" and config.max_terms not in pruned:
            raise InsightError(
                f"no threshold leaves every action at most {config.max_terms} terms without pruning every variable",
                hint="allow more terms with a larger --max-terms, or --fit refit",
            )
        enough = config.max_terms in pruned and worse_fidelity(judge(pruned[config.max_terms])) >= config.min_fidelity
        if config.fit == "refit" or (config.fit == "auto" and not enough):
            refitted = refitted_policies(actor, left_out, fit_states, budgets, player, config)
        judge.measure([*pruned.values(), *refitted.values(), *([full] if full else [])])  # all rollouts at once
        chosen = choose(pruned.get(config.max_terms), refitted.get(config.max_terms), judge)
    points = [(policy, budget) for found in (pruned, refitted) for budget, policy in found.items()]
    return left_out, points + ([(full, None)] if full is not None else []), chosen


def run(config: ExtractConfig) -> ExtractResult:
    config.validate()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    agent, checkpoint = load_agent(path, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    actor = interface(agent, checkpoint, game)
    effects = None if game.continuous else game.effects  # decisions with the same effect count as one
    held_out, fit_states = dataset_states(
        agent, checkpoint, Path(config.dataset or checkpoint.meta["dataset"]), device, config.seed, effects
    )
    with Player(agent, game, config.episodes, config.max_steps, device) if config.episodes else nullcontext() as player:
        judge = Judge(held_out, player, config.seed, effects)
        left_out, points, chosen = candidates(config, agent.eql, actor, fit_states, player, judge)
        tradeoff = [
            row(policy, budget, judge(policy), policy is chosen and budget == config.max_terms)
            for policy, budget in points
        ]
        measured, eql = judge(chosen), judge.eql()

    returns = {"eql": float(eql.returns.mean()), "symbolic": measured["return"]} if eql is not None else {}
    agreement = {key: value for key, value in measured.items() if key != "return"}
    report = {
        "run": str(path),
        "fidelity": agreement,
        "returns": returns,
        "episodes": config.episodes,
        "max_steps": config.max_steps,
        "max_terms": config.max_terms,
        "fit": config.fit,
        "same_effect": game.same_effect,  # fidelity counts these choices as the ones they stand for
        "terms": dict(zip(actor.actions, chosen.term_counts)),
        "left_out": left_out.reasons,
        "tradeoff": tradeoff,
        "chosen": next(entry for entry in tradeoff if entry["chosen"]),
    }
    document = policy_document(chosen, game.name, game.actions, [o["name"] for o in checkpoint.meta["objects"]], report)
    extra = {
        "policy_tradeoff.parquet": table_bytes(tradeoff),
        "policy_tradeoff.png": plot_bytes(tradeoff, returns.get("eql"), game.name),
    }
    files = write_exports(Path(config.out or path.parent), chosen, document, extra)
    return ExtractResult(
        files, chosen, agreement, returns, held_out.inputs, tradeoff, left_out.reasons, game.same_effect
    )
