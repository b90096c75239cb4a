"""The trade-off between how short the equations are and how well they stand in for the EQL
actor: for each term budget (and the whole pruned network, where it is small enough), the
fidelity on the dataset's held-out states, the fidelity on fresh rollouts of the equations
themselves, and their return. Written as policy_tradeoff.parquet and policy_tradeoff.png.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from insight_cli.extract_policy.rollouts import Player, Rollout
from insight_cli.extract_policy.symbolic import States, SymbolicPolicy, agree

BUDGETS = (1, 2, 3, 5, 10, 20)  # terms per action measured besides the chosen budget
COLUMNS = (
    "method",
    "budget",
    "terms",
    "total_terms",
    "threshold",
    "held_out_fidelity",
    "rollout_fidelity",
    "return",
    "chosen",
)


def fidelity(
    policy: SymbolicPolicy, inputs: np.ndarray, decisions: np.ndarray, where: str, effects: np.ndarray | None = None
) -> dict:
    """How closely the policy acts like `decisions` (the EQL actor's, as effects) on (N, V)
    inputs: `<where>_fidelity`, the share of agreeing states (two choices with the same effect,
    see GameSpec.effects, agree), and for continuous actions `<where>_action_error`, the mean
    absolute difference of the action values."""
    if not len(decisions):
        return {f"{where}_states": 0, f"{where}_fidelity": float("nan")}
    chosen = policy.choose(inputs)
    if effects is not None and not policy.continuous:
        chosen = effects[chosen]
    measured = {
        f"{where}_states": len(decisions),
        f"{where}_fidelity": float(agree(chosen, decisions, policy.continuous).mean()),
    }
    if policy.continuous:
        measured[f"{where}_action_error"] = float(np.abs(chosen - decisions).mean())
    return measured


def worse_fidelity(measured: dict) -> float:
    """The lower of the held-out and the rollout fidelity (the held-out one without rollouts):
    equations count as faithful only where they are faithful on both."""
    return min(measured["held_out_fidelity"], measured.get("rollout_fidelity", math.inf))


class Judge:
    """Measures equations against the EQL actor, each distinct set of terms once: fidelity on
    the held-out states, and, with a player, fidelity on the equations' own rollouts from
    `seed` (where the EQL actor's start too) and their return. `measure` plays many sets of
    equations (and the EQL actor) at once."""

    def __init__(self, held_out: States, player: Player | None, seed: int, effects: np.ndarray | None = None):
        self.held_out, self.player, self.seed, self.effects = held_out, player, seed, effects
        self._measured: dict[tuple, dict] = {}
        self._eql: Rollout | None = None

    def eql(self) -> Rollout | None:
        """The EQL actor's own rollouts (None without a player): the return to compare with."""
        if self.player and self._eql is None:
            self.measure([])
        return self._eql

    def measure(self, policies: list[SymbolicPolicy]) -> None:
        """Measure every policy not measured yet, their rollouts played together."""
        todo = {}
        for policy in policies:
            if _key(policy) not in self._measured:
                todo.setdefault(_key(policy), policy)
        players: list[SymbolicPolicy | None] = ([None] if self._eql is None else []) + list(todo.values())
        rollouts = self.player.play_all(players, self.seed) if self.player and players else []
        if self._eql is None and rollouts:
            self._eql = rollouts.pop(0)
        for index, (key, policy) in enumerate(todo.items()):
            measured = fidelity(policy, *self.held_out, "held_out", self.effects)
            if rollouts:
                rollout = rollouts[index]
                measured.update(fidelity(policy, rollout.inputs, rollout.labels, "rollout", self.effects))
                measured["return"] = float(rollouts[index].returns.mean())
            self._measured[key] = measured

    def __call__(self, policy: SymbolicPolicy) -> dict:
        self.measure([policy])
        return self._measured[_key(policy)]


def _key(policy: SymbolicPolicy) -> tuple:
    return tuple(tuple(sorted(terms.items())) for terms in policy.terms)


def row(policy: SymbolicPolicy, budget: int | None, measured: dict, chosen: bool) -> dict:
    """One line of the trade-off: budget None is the whole pruned network."""
    return {
        "method": policy.method,
        "budget": budget,
        "terms": max(policy.term_counts),
        "total_terms": sum(policy.term_counts),
        "threshold": policy.threshold if policy.method == "pruned" else None,
        "held_out_fidelity": measured["held_out_fidelity"],
        "rollout_fidelity": measured.get("rollout_fidelity"),
        "return": measured.get("return"),
        "chosen": chosen,
    }


def table_bytes(rows: list[dict]) -> bytes:
    """policy_tradeoff.parquet: one row per measured point, COLUMNS."""
    schema = pa.schema(
        [
            ("method", pa.string()),
            ("budget", pa.int64()),
            ("terms", pa.int64()),
            ("total_terms", pa.int64()),
            ("threshold", pa.float64()),
            ("held_out_fidelity", pa.float64()),
            ("rollout_fidelity", pa.float64()),
            ("return", pa.float64()),
            ("chosen", pa.bool_()),
        ]
    )
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{name: entry[name] for name in COLUMNS} for entry in rows], schema), sink)
    return sink.getvalue()


def plot_bytes(rows: list[dict], eql_return: float | None, game: str) -> bytes:
    """policy_tradeoff.png: terms per action (log scale) against fidelity, and against return
    with the EQL actor's as a line; the chosen point ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if eql_return is not None else 1
    figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    fidelity_axis = axes[0, 0]
    for method, marker, color in (("pruned", "o", "C0"), ("refit", "s", "C1")):
        points = sorted((entry for entry in rows if entry["method"] == method), key=lambda entry: entry["terms"])
        if not points:
            continue
        terms = [max(entry["terms"], 1) for entry in points]  # a policy of constants still shows on a log scale
        fidelity_axis.plot(
            terms,
            [entry["held_out_fidelity"] for entry in points],
            marker=marker,
            color=color,
            label=f"{method}: held-out",
        )
        if eql_return is not None:
            fidelity_axis.plot(
                terms,
                [entry["rollout_fidelity"] for entry in points],
                marker=marker,
                color=color,
                linestyle="--",
                label=f"{method}: own rollouts",
            )
            axes[0, 1].plot(terms, [entry["return"] for entry in points], marker=marker, color=color, label=method)
    for entry in rows:
        if entry["chosen"]:
            fidelity_axis.scatter(
                [max(entry["terms"], 1)],
                [entry["held_out_fidelity"]],
                s=180,
                facecolors="none",
                edgecolors="black",
                zorder=3,
                label="chosen",
            )
            if eql_return is not None:
                axes[0, 1].scatter(
                    [max(entry["terms"], 1)], [entry["return"]], s=180, facecolors="none", edgecolors="black", zorder=3
                )
    fidelity_axis.set_ylabel("fidelity (agreement with the EQL actor)")
    fidelity_axis.set_ylim(-0.02, 1.02)
    if eql_return is not None:
        axes[0, 1].axhline(eql_return, color="gray", linestyle=":", label="EQL actor")
        axes[0, 1].set_ylabel("return (episodes cut at --max-steps)")
    for axis in axes[0]:
        axis.set_xscale("log")
        axis.set_xlabel("terms per action (the longest equation)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"{game}: equations' length against fidelity and return")
    figure.tight_layout()
    sink = io.BytesIO()
    figure.savefig(sink, dpi=100, format="png")
    plt.close(figure)
    return sink.getvalue()
