"""Which variables readable equations may mention: not those that never move (a score digit, a
wall, the x of a paddle that only moves up and down), nor the objects the EQL actor ignores.

Both are folded into the actor before it is pruned or refitted: a variable held at a typical
value joins the first layer's biases, so the folded actor decides (almost) as the actor does and
no term of its expansion can mention the variable. Fidelity is still measured against the
actor itself, so folding too much would show.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from insight_cli.envs.preprocessing import STACK
from insight_cli.extract_policy.symbolic import Variable, agree
from insight_cli.train.eql import EqlActor

MOTIONLESS = 0.005  # a variable whose standard deviation, where its object is on screen, is below this never moves
IGNORED = 0.01  # the objects left out as ignored may change at most this share of the actor's decisions, together

Decide = Callable[[np.ndarray], np.ndarray]  # (N, V) inputs -> (N,) choices or (N, A) actions


@dataclass(frozen=True)
class Focus:
    """The variables to leave out: index -> the value each is held at, and why, per object
    (or ego state value) left out entirely and per motionless variable of the others."""

    held: dict[int, float]
    reasons: dict[str, str]


def groups(variables: list[Variable]) -> dict[str, list[int]]:
    """Variable indices by what they describe: an object's coordinates together, each ego
    state value alone."""
    grouped: dict[str, list[int]] = {}
    for index, variable in enumerate(variables):
        grouped.setdefault(variable.object if variable.slot is not None else variable.name, []).append(index)
    return grouped


def motionless(inputs: np.ndarray, variables: list[Variable]) -> dict[int, float]:
    """(N, V) inputs -> the variables that never move: index -> their mean. A coordinate counts
    only where its object is on screen in that frame (x = y = 0 is "absent", as at the start of
    an episode), so an object that is sometimes missing can still be motionless."""
    inputs = np.asarray(inputs, dtype=np.float64)
    held = {}
    for index, variable in enumerate(variables):
        values = inputs[:, index]
        if variable.slot is not None:
            partner = index + (1 if variable.axis == "x" else -1)  # (x, y) of one frame are adjacent
            values = values[(inputs[:, index] != 0) | (inputs[:, partner] != 0)]
        if len(values) == 0 or values.std() < MOTIONLESS:
            held[index] = float(values.mean()) if len(values) else 0.0
    return held


def hold(inputs: np.ndarray, held: dict[int, float]) -> np.ndarray:
    """(N, V) inputs with the held variables set to their values."""
    inputs = np.array(inputs, dtype=np.float64)
    for index, value in held.items():
        inputs[:, index] = value
    return inputs


def focus(decide: Decide, inputs: np.ndarray, variables: list[Variable], continuous: bool) -> Focus:
    """What to leave out, judged on (N, V) states: every motionless variable, then the objects
    whose variables, held at their means, change the fewest of the actor's decisions, as many
    as together change at most IGNORED of them."""
    reference = decide(inputs)

    def changed(held: dict[int, float]) -> float:
        return float(1.0 - agree(decide(hold(inputs, held)), reference, continuous).mean()) if len(inputs) else 0.0

    still = motionless(inputs, variables)
    means = np.asarray(inputs, dtype=np.float64).mean(axis=0) if len(inputs) else np.zeros(len(variables))
    moving = {
        name: {index: float(means[index]) for index in indices if index not in still}
        for name, indices in groups(variables).items()
    }
    alone = {name: changed({**still, **values}) for name, values in moving.items() if values}
    held, ignored = dict(still), {}
    for name in sorted(alone, key=alone.get):
        if changed({**held, **moving[name]}) > IGNORED:
            break
        held.update(moving[name])
        ignored[name] = alone[name]
    reasons = {}
    for name, indices in groups(variables).items():
        if name in ignored:
            reasons[name] = f"ignored by the EQL actor (leaving it out changes {ignored[name]:.1%} of its decisions)"
        elif not moving[name]:
            reasons[name] = "never moves"
        else:
            reasons.update(_motionless_parts(variables, [index for index in indices if index in still]))
    return Focus(held, reasons)


def _motionless_parts(variables: list[Variable], indices: list[int]) -> dict[str, str]:
    """The motionless variables of an object that moves, for the summary: x_paddle_1..4 when
    every frame of an axis is motionless, else each by its name."""
    by_axis: dict[str, list[str]] = {}
    for index in indices:
        by_axis.setdefault(variables[index].name.rsplit("_", 1)[0], []).append(variables[index].name)
    parts = {}
    for axis, names in by_axis.items():
        parts.update(dict.fromkeys([f"{axis}_1..{STACK}"] if len(names) == STACK else names, "never moves"))
    return parts


def fold(actor: EqlActor, held: dict[int, float]) -> EqlActor:
    """A copy of the actor with each held input fixed at its value: its first-layer weights
    move into the biases, so the copy computes exactly the actor on inputs whose held
    variables have those values."""
    folded = copy.deepcopy(actor)
    if not held:
        return folded
    indices = torch.tensor(list(held))
    values = torch.tensor(list(held.values()), dtype=folded.layers[0].linear.weight.dtype)
    with torch.no_grad():
        linear = folded.layers[0].linear
        linear.bias += linear.weight[:, indices] @ values
        linear.weight[:, indices] = 0.0
    return folded
