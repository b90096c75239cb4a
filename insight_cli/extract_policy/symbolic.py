"""The EQL actor as one polynomial per action logit over named object coordinates.

Every EQL primitive (square, cube, constant, identity, product, add) maps polynomials to
polynomials, so the whole actor is a polynomial in its inputs. We prune the weights below a
threshold, expand exactly with sympy's sparse polynomial ring, drop the expanded terms whose
coefficient is below the same threshold (every variable lies in [0, 1], so such a term moves
its logit by less than the threshold), and round what is left to a number of significant
digits. Expansions that could exceed MAX_EXPANDED_TERMS terms are refused before they start.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import sympy
import torch
from sympy.polys.domains import RR
from sympy.polys.rings import ring

from insight_cli.envs.preprocessing import STACK
from insight_cli.errors import InsightError
from insight_cli.train.eql import BINARY, UNARY, EqlActor

AXES = ("x", "y")
READABLE_TERMS = 20  # a logit longer than this is reported as unreadable
MAX_EXPANDED_TERMS = 100_000  # beyond this a logit is unreadable and slow to expand: prune more

COORDINATE_CONVENTION = (
    "Coordinates are object centres as fractions of the screen: origin at the top-left corner, "
    "x grows to the right and y grows downward, both in [0, 1]. Frame 1 is the oldest of the four "
    "stacked frames and frame 4 the current one. An object not on screen has x = y = 0."
)


@dataclass(frozen=True)
class Variable:
    name: str  # e.g. x_ball_4
    object: str
    slot: int  # the perception slot, i.e. index into the K axis of the coordinates
    frame: int  # 1..4, 4 = current
    axis: str  # "x" or "y"

    @property
    def meaning(self) -> str:
        direction = "horizontal" if self.axis == "x" else "vertical"
        when = "the current frame" if self.frame == STACK else f"frame {self.frame} of {STACK}"
        return f"{direction} position of the {self.object} in {when}"


def variables_for(object_names: list[str]) -> list[Variable]:
    """One variable per EQL input, in the order of `coordinates.flatten(1)` over (K, 4, 2)."""
    identifiers: list[str] = []
    for slot, name in enumerate(object_names):
        identifier = re.sub(r"\W+", "_", name.lower()).strip("_") or f"obj{slot}"
        if identifier[0].isdigit():
            identifier = f"obj{identifier}"
        identifiers.append(identifier if identifier not in identifiers else f"{identifier}{slot}")
    return [
        Variable(f"{axis}_{identifier}_{frame}", object_names[slot], slot, frame, axis)
        for slot, identifier in enumerate(identifiers)
        for frame in range(1, STACK + 1)
        for axis in AXES
    ]


Monomial = tuple[int, ...]  # the exponent of every variable


@dataclass
class SymbolicPolicy:
    """Action logits as polynomials: terms[a] maps a monomial to its (rounded) coefficient."""

    variables: list[Variable]
    actions: list[str]
    terms: list[dict[Monomial, float]]
    threshold: float
    digits: int

    @cached_property
    def symbols(self) -> list[sympy.Symbol]:
        return [sympy.Symbol(variable.name, real=True) for variable in self.variables]

    @cached_property
    def expressions(self) -> list[sympy.Expr]:
        return [self._expression(terms) for terms in self.terms]

    def _expression(self, terms: dict[Monomial, float]) -> sympy.Expr:
        return sympy.Add(*(
            sympy.Float(coefficient, self.digits) * sympy.Mul(*(s**e for s, e in zip(self.symbols, monomial) if e))
            for monomial, coefficient in terms.items()
        ))

    def latex(self, expression: sympy.Expr) -> str:
        """LaTeX with variables typeset as x_{ball,4} rather than sympy's x_{ball 4}."""
        names = {}
        for symbol, variable in zip(self.symbols, self.variables):
            identifier = variable.name.split("_", 1)[1].rsplit("_", 1)[0].replace("_", r"\_")
            names[symbol] = rf"{variable.axis}_{{\mathrm{{{identifier}}},{variable.frame}}}"
        return sympy.latex(expression, symbol_names=names)

    @property
    def term_counts(self) -> list[int]:
        return [len(terms) for terms in self.terms]

    @property
    def used_variables(self) -> list[Variable]:
        used = {index for terms in self.terms for monomial in terms for index, e in enumerate(monomial) if e}
        return [variable for index, variable in enumerate(self.variables) if index in used]

    def logits(self, coordinates: np.ndarray) -> np.ndarray:
        """(B, K, 4, 2) coordinates -> (B, A) logits, from the rounded coefficients."""
        inputs = np.asarray(coordinates, dtype=np.float64).reshape(len(coordinates), -1)
        out = np.zeros((len(inputs), len(self.actions)))
        for action, terms in enumerate(self.terms):
            for monomial, coefficient in terms.items():
                value = np.full(len(inputs), coefficient)
                for index in np.flatnonzero(monomial):
                    value *= inputs[:, index] ** monomial[index]
                out[:, action] += value
        return out

    def act(self, coordinates: np.ndarray) -> np.ndarray:
        return self.logits(coordinates).argmax(axis=-1)

    def logit_gradients(self, coordinates: np.ndarray) -> np.ndarray:
        """(B, K, 4, 2) -> (B, A, V): d logit_a / d variable_v, exactly."""
        inputs = np.asarray(coordinates, dtype=np.float64).reshape(len(coordinates), -1)
        out = np.zeros((len(inputs), len(self.actions), inputs.shape[1]))
        for action, terms in enumerate(self.terms):
            for monomial, coefficient in terms.items():
                powers = np.asarray(monomial)
                for index in np.flatnonzero(powers):
                    lowered = powers.copy()
                    lowered[index] -= 1
                    out[:, action, index] += coefficient * powers[index] * np.prod(inputs**lowered, axis=1)
        return out

    def log_prob_gradients(self, coordinates: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(B, K, 4, 2), (B,) -> (B, V): d log p(action) / d variable, with p the softmax of the logits."""
        probabilities = self.probabilities(coordinates)
        gradients = self.logit_gradients(coordinates)
        chosen = gradients[np.arange(len(actions)), actions]
        return chosen - np.einsum("ba,bav->bv", probabilities, gradients)

    def probabilities(self, coordinates: np.ndarray) -> np.ndarray:
        logits = self.logits(coordinates)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


def _round(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def _pruned(weight: torch.Tensor, threshold: float) -> np.ndarray:
    array = weight.detach().double().cpu().numpy()
    return np.where(np.abs(array) >= threshold, array, 0.0)


class TooManyTerms(Exception):
    """The expansion would exceed MAX_EXPANDED_TERMS terms in some logit."""

    def __init__(self, bound: int):
        super().__init__(bound)
        self.bound = bound


def term_bound(actor: EqlActor, n_variables: int, threshold: float) -> int:
    """An upper bound on the terms of the longest expanded logit, from which variables reach
    each unit and at what degree: cheap, so hopeless expansions are never started."""
    values = [(frozenset([index]), 1) for index in range(n_variables)]  # (variables, degree) per value
    for layer in actor.layers:
        arguments = []
        for row in _pruned(layer.linear.weight, threshold):
            inputs = [values[index] for index in np.flatnonzero(row)]
            arguments.append((frozenset().union(*(v for v, _ in inputs)), max((d for _, d in inputs), default=0)))
        repeats, unary, pairs = layer.repeats, arguments[: layer.n_unary], arguments[layer.n_unary :]
        values = []
        for index, name in enumerate(UNARY):
            for used, degree in unary[index * repeats : (index + 1) * repeats]:
                power = {"square": 2, "cube": 3, "constant": 0, "identity": 1}[name]
                values.append((used if power else frozenset(), degree * power))
        for index, name in enumerate(BINARY):
            for unit in range(repeats):
                (u, du), (v, dv) = pairs[2 * (index * repeats + unit)], pairs[2 * (index * repeats + unit) + 1]
                values.append((u | v, du + dv if name == "product" else max(du, dv)))
    bounds = []
    for row in _pruned(actor.output.weight, threshold):
        reaching = [values[index] for index in np.flatnonzero(row)]
        every = frozenset().union(*(v for v, _ in reaching))
        degree = max((d for _, d in reaching), default=0)
        # no more than the monomials of each unit, nor than all monomials of that degree
        bounds.append(1 + min(sum(math.comb(len(v) + d, d) for v, d in reaching), math.comb(len(every) + degree, degree)))
    return max(bounds, default=1)


def expand(actor: EqlActor, n_variables: int, threshold: float) -> list[dict[Monomial, float]]:
    """The pruned actor's logits, expanded exactly: one {monomial: coefficient} per action.
    Raises TooManyTerms rather than start an expansion that could exceed MAX_EXPANDED_TERMS."""
    bound = term_bound(actor, n_variables, threshold)
    if bound > MAX_EXPANDED_TERMS:
        raise TooManyTerms(bound)
    _, *generators = ring([f"v{index}" for index in range(n_variables)], RR)
    zero = generators[0] * 0
    values = list(generators)
    for layer in actor.layers:
        weight, bias = _pruned(layer.linear.weight, threshold), _pruned(layer.linear.bias, threshold)
        arguments = []
        for row, offset in zip(weight, bias):
            argument = zero + float(offset)
            for index in np.flatnonzero(row):
                argument += float(row[index]) * values[index]
            arguments.append(argument)
        repeats = layer.repeats
        unary, pairs = arguments[: layer.n_unary], arguments[layer.n_unary :]
        values = []
        for index, name in enumerate(UNARY):
            for u in unary[index * repeats : (index + 1) * repeats]:
                values.append({"square": u**2, "cube": u**3, "constant": zero + 1.0, "identity": u}[name])
        for index, name in enumerate(BINARY):
            for unit in range(repeats):
                u, v = pairs[2 * (index * repeats + unit)], pairs[2 * (index * repeats + unit) + 1]
                values.append(u * v if name == "product" else u + v)
    weight, bias = _pruned(actor.output.weight, threshold), _pruned(actor.output.bias, threshold)
    scale = actor.config.inverse_temperature
    logits = []
    for row, offset in zip(weight, bias):
        logit = zero + float(offset)
        for index in np.flatnonzero(row):
            logit += float(row[index]) * values[index]
        logits.append({monomial: scale * float(coefficient) for monomial, coefficient in logit.terms()})
    return logits


def _build(actor: EqlActor, object_names: list[str], actions: list[str], threshold: float, digits: int) -> SymbolicPolicy:
    variables = variables_for(object_names)
    terms = []
    for logit in expand(actor, len(variables), threshold):  # a term below the threshold moves its logit by less
        kept = {m: _round(c, digits) for m, c in logit.items() if abs(c) >= threshold}
        terms.append({m: c for m, c in kept.items() if c != 0.0})
    return SymbolicPolicy(variables, list(actions), terms, threshold, digits)


def _largest_weight(actor: EqlActor) -> float:
    return max(float(p.detach().abs().max()) for p in actor.parameters())


def extract(actor: EqlActor, object_names: list[str], actions: list[str], threshold: float, digits: int) -> SymbolicPolicy:
    """Prune, expand, drop negligible terms and round: the readable policy."""
    try:
        policy = _build(actor, object_names, actions, threshold, digits)
    except TooManyTerms as error:
        raise InsightError(
            f"--threshold {threshold:g} leaves a logit with up to {error.bound:,} terms, too many to expand or read",
            hint="prune more: a larger --threshold, or --max-terms N",
        ) from None
    if not policy.used_variables:
        raise InsightError(
            f"--threshold {threshold:g} prunes every variable from the policy "
            f"(the largest EQL weight is {_largest_weight(actor):.3g})",
            hint="use a smaller --threshold, or --max-terms to find one",
        )
    return policy


def smallest_pruning(actor: EqlActor, object_names: list[str], actions: list[str], max_terms: int, digits: int,
                     floor: float, steps: int = 48) -> SymbolicPolicy:
    """The least pruning that leaves every action at most `max_terms` terms: bisection over
    thresholds on a geometric grid from `floor` to just above the largest weight (where
    everything is pruned), assuming more pruning never adds terms."""
    largest = _largest_weight(actor)
    grid = np.geomspace(min(max(floor, largest * 1e-6), largest), largest * 1.001, steps)
    policies: dict[int, SymbolicPolicy] = {}

    def pruned_enough(index: int) -> bool:
        try:
            policies[index] = _build(actor, object_names, actions, float(grid[index]), digits)
        except TooManyTerms:
            return False
        return not policies[index].used_variables or max(policies[index].term_counts) <= max_terms

    failing, passing = -1, len(grid) - 1  # everything is pruned at the last threshold
    while passing - failing > 1:
        middle = (failing + passing) // 2
        if pruned_enough(middle):
            passing = middle
        else:
            failing = middle
    policy = policies.get(passing) or _build(actor, object_names, actions, float(grid[passing]), digits)
    if not policy.used_variables:
        raise InsightError(
            f"no threshold leaves every action at most {max_terms} terms without pruning every variable",
            hint="allow more terms with a larger --max-terms",
        )
    return policy
