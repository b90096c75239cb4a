"""How well polynomials of each degree can follow a run's EQL actor, with every term allowed: the
ceiling a refit of at most N terms per action works under (`insight extract-policy` fits degree
<= 2, at most --max-terms of them).

    .venv/bin/python benchmarks/refit_ceiling.py data/Pong/runs/cpu/run.ckpt [--degrees 1 2 3]

For each degree, all monomials of that degree or less over the variables extract-policy keeps are
fitted (the refit's own penalised logistic regression, every term free) to the EQL actor's
decisions on the dataset's training states and on 4 games of its own (500 steps each, seeds from
5,000), and the agreement is printed on the dataset's held-out states and on 4 other games of its
own (seeds 0-3, the ones extract-policy measures fidelity on). Discrete games only; actions with the
same effect count as one.
"""

from __future__ import annotations

import argparse
import itertools
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from insight_cli.extract_policy import refit
from insight_cli.extract_policy.relevance import focus
from insight_cli.extract_policy.rollouts import Player
from insight_cli.extract_policy.stage import dataset_states, eql_decisions, interface
from insight_cli.games import get_game
from insight_cli.train.agent import load_agent

GAMES, STEPS = 4, 500
refit.MAX_ITERATIONS = 2000  # hundreds of free terms need more L-BFGS steps than a 10-term refit


def monomials_up_to(kept: list[int], degree: int, n_variables: int) -> np.ndarray:
    """(C, V) exponents of the constant and every monomial of degree <= `degree` in `kept`."""
    rows = [np.zeros(n_variables, dtype=np.int64)]
    for order in range(1, degree + 1):
        for combination in itertools.combinations_with_replacement(kept, order):
            rows.append(np.bincount(combination, minlength=n_variables))
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--degrees", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    device = torch.device("cpu")
    agent, checkpoint = load_agent(args.checkpoint, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    actor = interface(agent, checkpoint, game)
    held, fit = dataset_states(agent, checkpoint, Path(checkpoint.meta["dataset"]), device, 0, game.effects)
    left_out = focus(partial(eql_decisions, agent.eql, continuous=False), fit.inputs, actor.variables, False)
    kept = [index for index in range(len(actor.variables)) if index not in left_out.held]
    with Player(agent, game, GAMES, STEPS, device) as player:
        measured, more = player.play(None, 0), player.play(None, 5_000)
    inputs = np.concatenate([fit.inputs, more.inputs])
    targets = refit.targets_for(np.concatenate([fit.decisions, more.labels]), len(actor.actions), False)
    print(f"{len(kept)} of {len(actor.variables)} variables kept; {len(inputs):,} fit states")
    for degree in args.degrees:
        started = time.perf_counter()
        monomials = monomials_up_to(kept, degree, len(actor.variables))
        active = np.ones((len(actor.actions), len(monomials)), dtype=bool)
        active[targets.mean(axis=0) < refit.RARE] = False  # as the refit: unused actions get no terms
        coefficients = refit.fit_coefficients(
            refit.monomial_values(inputs, monomials), targets, active, np.zeros(active.shape), False
        )

        def agreement(states: np.ndarray, decisions: np.ndarray) -> float:
            choices = (refit.monomial_values(states, monomials) @ coefficients.T).argmax(axis=1)
            return float(np.mean(game.effects[choices] == decisions))

        print(
            f"degree <= {degree}: {len(monomials):,} terms per action, agreement held-out "
            f"{agreement(held.inputs, held.decisions):.1%}, own games "
            f"{agreement(measured.inputs, measured.labels):.1%} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
