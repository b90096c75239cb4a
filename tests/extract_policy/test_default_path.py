"""The default extraction of a barely trained Pong-sized actor: seconds (it once took 13 minutes
and wrote thousands of terms per action), within the budget, refitted where pruning fails."""

import time
from pathlib import Path

import numpy as np
import torch

from insight_cli.extract_policy import MAX_TERMS, symbolic
from insight_cli.extract_policy.stage import ExtractConfig, candidates, eql_decisions
from insight_cli.extract_policy.symbolic import SEARCH_TERMS, Interface, States, term_bound, variables_for
from insight_cli.extract_policy.tradeoff import BUDGETS, Judge
from insight_cli.train.eql import EqlActor, EqlConfig

# 19 objects, 152 inputs: two scores and ten walls stay put, two paddles move up and down, the
# ball and four flying objects anywhere (a random actor heeds them all a little)
OBJECTS = (
    ["score_enemy", "score_player", "player", "enemy", "ball"]
    + [f"bird{i}" for i in range(4)]
    + [f"wall{i}" for i in range(10)]
)
ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]


def pong_like_states(count: int, seed: int) -> np.ndarray:
    """(N, 152) the coordinates of OBJECTS, each frame of a flying object anywhere."""
    rng = np.random.default_rng(seed)
    coordinates = np.tile(np.random.default_rng(0).random((1, len(OBJECTS), 1, 2)), (count, 1, 4, 1))
    coordinates[:, 2:4, :, 1] = rng.random((count, 2, 4))
    coordinates[:, 4:9] = rng.random((count, 5, 4, 2))
    return coordinates.reshape(count, -1)


def barely_trained() -> tuple[EqlActor, Interface, States, Judge]:
    """A Pong-sized EQL actor as initialised (every weight small, none zero), its interface,
    states to fit on and a judge of held-out states (no rollouts)."""
    torch.manual_seed(0)
    eql = EqlActor(EqlConfig(len(OBJECTS) * 8, len(ACTIONS)))
    fit, held_out = pong_like_states(4000, 0), pong_like_states(1000, 1)
    judge = Judge(States(held_out, eql_decisions(eql, held_out, False)), None, seed=0)
    return eql, Interface(variables_for(OBJECTS), ACTIONS), States(fit, eql_decisions(eql, fit, False)), judge


def test_a_barely_trained_pong_sized_actor_gives_short_equations_in_seconds(monkeypatch):
    expanded = []
    real = symbolic.expand

    def counted(actor, n_variables, threshold, limit=symbolic.MAX_EXPANDED_TERMS):
        logits = real(actor, n_variables, threshold, limit)  # raises, unexpanded, beyond the limit
        expanded.append(term_bound(actor, n_variables, threshold))
        return logits

    monkeypatch.setattr(symbolic, "expand", counted)
    start = time.perf_counter()
    eql, interface, fit_states, judge = barely_trained()
    left_out, points, chosen = candidates(
        ExtractConfig(checkpoint=Path("run.ckpt")), eql, interface, fit_states, None, judge
    )
    took = time.perf_counter() - start
    assert took < 60, f"{took:.0f} s"  # generous for a loaded machine: about 1 s on one free core
    assert expanded and max(expanded) <= SEARCH_TERMS  # the default path never expands beyond the search's limit
    assert max(chosen.term_counts) <= MAX_TERMS and all(max(p.term_counts) <= b for p, b in points if b is not None)
    assert {budget for _, budget in points} >= set(BUDGETS)  # every budget measured, by a refit where pruning fails
    assert {"score_enemy", "score_player", "wall0", "x_player_1..4"} <= set(left_out.reasons)
    assert not {v.object for v in chosen.used_variables} & {"score_enemy", "score_player", "wall0"}


def test_auto_refits_only_where_pruning_falls_below_the_minimum_fidelity():
    eql, interface, fit_states, judge = barely_trained()
    pruned = candidates(
        ExtractConfig(checkpoint=Path("run.ckpt"), min_fidelity=0.0), eql, interface, fit_states, None, judge
    )[2]
    assert pruned.method == "pruned" and judge(pruned)["held_out_fidelity"] < 0.5  # the network pruned to 10 terms
    _, points, refitted = candidates(
        ExtractConfig(checkpoint=Path("run.ckpt")), eql, interface, fit_states, None, judge
    )
    assert refitted.method == "refit" and judge(refitted)["held_out_fidelity"] >= 0.9
    assert {policy.method for policy, _ in points} == {"pruned", "refit"}
