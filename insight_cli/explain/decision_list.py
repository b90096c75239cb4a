"""When each action is chosen, as a decision list a reader can apply to a state without the
equations: "1. If x_ball_4 - x_paddle_4 > 0.031: RIGHT." ... "3. Otherwise: NOOP." The offline
analyst learns it from the equations' choices over example states and writes it; the offline
simulatability reader reads it back from the text.

A condition compares one variable the equations use, or the difference of two on the same axis
(where one object is relative to another, or how far one moved between frames), with a threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from insight_cli.explain.faithfulness import VARIABLE
from insight_cli.extract_policy.symbolic import SymbolicPolicy

MAX_RULES = 4  # rules before "Otherwise": a list a person applies at a glance
DIGITS = 3  # of the thresholds as written
HEADER = "When each action is chosen (the first rule that holds decides):"
RULE = re.compile(
    rf"\bIf\s+({VARIABLE.pattern})(?:\s*-\s*({VARIABLE.pattern}))?\s*([<>])\s*([+-]?\d*\.?\d+)\s*:\s*(\w+)", re.I
)
OTHERWISE = re.compile(r"\bOtherwise\s*:\s*(\w+)", re.I)


@dataclass(frozen=True)
class Rule:
    variable: str
    minus: str | None  # the variable subtracted from it, if the condition is on a difference
    above: bool  # "> threshold", else "< threshold"
    threshold: float
    action: str

    def value(self, state: dict[str, float]) -> float | None:
        """The compared quantity in `state` (variable -> value); None where it lacks a variable."""
        if self.variable not in state or (self.minus is not None and self.minus not in state):
            return None
        return state[self.variable] - (state[self.minus] if self.minus else 0.0)

    def holds(self, state: dict[str, float]) -> bool:
        value = self.value(state)
        return value is not None and (value > self.threshold if self.above else value < self.threshold)

    def text(self) -> str:
        quantity = f"{self.variable} - {self.minus}" if self.minus else self.variable
        return f"If {quantity} {'>' if self.above else '<'} {self.threshold:.{DIGITS}f}: {self.action}."


def features(policy: SymbolicPolicy) -> list[tuple[int, int | None]]:
    """(variable, subtracted variable or None): every variable the equations use, and every
    difference of two of them on the same axis."""
    names = [v.name for v in policy.variables]
    used = [names.index(v.name) for v in policy.used_variables]
    pairs = [
        (a, b)
        for i, a in enumerate(used)
        for b in used[i + 1 :]
        if policy.variables[a].axis is not None and policy.variables[a].axis == policy.variables[b].axis
    ]
    return [(v, None) for v in used] + pairs


def _best_split(values: np.ndarray, chosen: np.ndarray, n_actions: int, default: int) -> tuple[int, bool, float, int]:
    """The threshold rule on one (N,) feature that gains most over leaving its states to `default`:
    (gain in states predicted right, above, threshold, action)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    below = np.cumsum(np.eye(n_actions, dtype=np.int64)[chosen[order]], axis=0)  # (N, A) among the i+1 smallest
    above = below[-1] - below
    between = ordered[:-1] < ordered[1:]  # a threshold fits between neighbours that differ
    gains = np.stack([below[:-1] - below[:-1, [default]], above[:-1] - above[:-1, [default]]])  # (2, N-1, A)
    gains[:, ~between] = -1
    side, split, action = np.unravel_index(int(np.argmax(gains)), gains.shape)
    threshold = round(float(ordered[split] + ordered[split + 1]) / 2, DIGITS)
    return int(gains[side, split, action]), bool(side), threshold, int(action)


def learn(policy: SymbolicPolicy, examples: np.ndarray, chosen: np.ndarray) -> tuple[list[Rule], str]:
    """A decision list for the equations' choices `chosen` (N,) on `examples` (N, V): rules added
    greedily, each the one that most improves on the majority action of the states left."""
    names, candidates = [v.name for v in policy.variables], features(policy)
    if not candidates:  # equations without variables: one action everywhere
        return [], policy.actions[int(np.bincount(chosen, minlength=len(policy.actions)).argmax())]
    values = np.stack([examples[:, a] - (examples[:, b] if b is not None else 0.0) for a, b in candidates], axis=1)
    left, rules, n_actions = np.ones(len(chosen), bool), [], len(policy.actions)
    while len(rules) < MAX_RULES and left.sum() > 1:
        default = int(np.bincount(chosen[left], minlength=n_actions).argmax())
        splits = [_best_split(values[left, f], chosen[left], n_actions, default) for f in range(len(candidates))]
        best = max(range(len(splits)), key=lambda f: splits[f][0])
        gain, above, threshold, action = splits[best]
        if gain <= 0:
            break
        a, b = candidates[best]
        rule = Rule(names[a], None if b is None else names[b], above, threshold, policy.actions[action])
        rules.append(rule)
        left &= ~((values[:, best] > threshold) if above else (values[:, best] < threshold))
    rest = chosen[left] if left.any() else chosen
    return rules, policy.actions[int(np.bincount(rest, minlength=n_actions).argmax())]


def render(rules: list[Rule], default: str) -> str:
    lines = [f"{number}. {rule.text()}" for number, rule in enumerate(rules, start=1)]
    return "\n".join([HEADER, *lines, f"{len(rules) + 1}. Otherwise: {default}."])


def read(text: str, actions: list[str]) -> tuple[list[Rule], str | None]:
    """The rules and the default action a text states, in its order (names of other actions are ignored)."""
    canonical = {a.lower(): a for a in actions}
    rules = [
        Rule(m[1], m[2], m[3] == ">", float(m[4]), canonical[m[5].lower()])
        for m in RULE.finditer(text)
        if m[5].lower() in canonical
    ]
    defaults = [canonical[m[1].lower()] for m in OTHERWISE.finditer(text) if m[1].lower() in canonical]
    return rules, defaults[-1] if defaults else None


def apply(rules: list[Rule], default: str | None, state: dict[str, float]) -> str | None:
    return next((rule.action for rule in rules if rule.holds(state)), default)
