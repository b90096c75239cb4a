"""The EQL actor as one polynomial per action over named object coordinates (and ego state
values, in driving games).

Every EQL primitive (square, cube, constant, identity, product, add) maps polynomials to
polynomials, so the whole actor is a polynomial in its inputs. We prune the weights below a
threshold, expand exactly (with numpy for a one-layer actor, else with sympy's sparse
polynomial ring), drop the expanded terms whose
coefficient is below the same threshold (every variable lies in [0, 1], so such a term moves
its polynomial by less than the threshold), and round what is left to a number of significant
digits. Expansions that could exceed MAX_EXPANDED_TERMS terms are refused before they start;
the search for the least pruning that fits a term budget expands nothing whose term bound
exceeds SEARCH_TERMS, so it takes seconds on any actor.

Discrete games: each polynomial is an action's logit, the agent takes the largest. Continuous
games: each is the mean of an action dimension and the action is tanh(mean).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import sympy
import torch
from scipy import sparse
from sympy.polys.domains import RR
from sympy.polys.rings import ring

from insight_cli.envs.preprocessing import STACK
from insight_cli.errors import InsightError
from insight_cli.train.eql import EqlActor

AXES = ("x", "y")
COORDINATE_NAME = r"[xy]_[a-z0-9_]+?_[1-4]"  # the pattern of the names variables_for gives coordinates
READABLE_TERMS = 20  # a logit longer than this is reported as unreadable
MAX_EXPANDED_TERMS = 100_000  # beyond this a logit is unreadable and slow to expand: prune more
SEARCH_TERMS = 20_000  # the budget search counts a threshold with a larger term bound as too long, unexpanded
METHODS = ("pruned", "refit")  # where equations come from: the pruned EQL network, or a fit to its decisions
ACTION_TOLERANCE = 0.05  # continuous actions in [-1, 1] agree when no value differs by more
EVALUATION_ENTRIES = 4_000_000  # evaluate terms over at most this many (state, term, factor) entries at once


@dataclass(frozen=True)
class Variable:
    """An object's coordinate (x_ball_4), or an ego state value (ego_speed: slot, frame and
    axis None, `about` its meaning)."""

    name: str
    object: str | None
    slot: int | None  # the perception slot, i.e. index into the K axis of the coordinates
    frame: int | None  # 1..4, 4 = current
    axis: str | None  # "x" or "y"
    about: str = ""

    @property
    def meaning(self) -> str:
        if self.slot is None:
            return self.about
        direction = "horizontal" if self.axis == "x" else "vertical"
        when = "the current frame" if self.frame == STACK else f"frame {self.frame} of {STACK}"
        return f"{direction} position of the {self.object} in {when}"


def variables_for(object_names: list[str], state: dict[str, str] | None = None) -> list[Variable]:
    """One variable per EQL input, in the order of `join`: the coordinates (K, 4, 2) flattened,
    then the ego state values (name -> meaning), if the actor sees them."""
    identifiers: list[str] = []
    for slot, name in enumerate(object_names):
        identifier = re.sub(r"\W+", "_", name.lower()).strip("_") or f"obj{slot}"
        if identifier[0].isdigit():
            identifier = f"obj{identifier}"
        identifiers.append(identifier if identifier not in identifiers else f"{identifier}{slot}")
    positions = [
        Variable(f"{axis}_{identifier}_{frame}", object_names[slot], slot, frame, axis)
        for slot, identifier in enumerate(identifiers)
        for frame in range(1, STACK + 1)
        for axis in AXES
    ]
    return positions + [Variable(name, None, None, None, None, about) for name, about in (state or {}).items()]


def join(coordinates: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
    """(B, K, 4, 2) coordinates and (B, S) ego states -> (B, V) policy inputs."""
    coordinates = np.asarray(coordinates, dtype=np.float64)
    flat = coordinates.reshape(len(coordinates), -1)
    return (
        flat if state is None else np.concatenate([flat, np.asarray(state, np.float64).reshape(len(flat), -1)], axis=1)
    )


class States(NamedTuple):
    """States the EQL actor decided in."""

    inputs: np.ndarray  # (N, V) its inputs (see `join`)
    decisions: np.ndarray  # (N,) its greedy choices there (continuous: (N, A) actions)


def agree(chosen: np.ndarray, reference: np.ndarray, continuous: bool) -> np.ndarray:
    """(N,) whether two players' decisions agree: the same choice, or (continuous) every action
    value within ACTION_TOLERANCE."""
    if not continuous:
        return np.asarray(chosen) == np.asarray(reference)
    return (np.abs(np.asarray(chosen) - np.asarray(reference)) <= ACTION_TOLERANCE).all(axis=-1)


Monomial = tuple[int, ...]  # the exponent of every variable


@dataclass
class SymbolicPolicy:
    """Action logits (continuous: means) as polynomials: terms[a] maps a monomial to its
    (rounded) coefficient. Methods take (B, V) inputs (see `join`), or (B, K, 4, 2)
    coordinates when the policy has no ego state. `method` says where the terms come from
    (METHODS); `threshold` is the pruning of a pruned network (0 for a refit)."""

    variables: list[Variable]
    actions: list[str]
    terms: list[dict[Monomial, float]]
    threshold: float
    digits: int
    continuous: bool = False
    method: str = "pruned"

    @cached_property
    def symbols(self) -> list[sympy.Symbol]:
        return [sympy.Symbol(variable.name, real=True) for variable in self.variables]

    @cached_property
    def expressions(self) -> list[sympy.Expr]:
        return [self._expression(terms) for terms in self.terms]

    def _expression(self, terms: dict[Monomial, float]) -> sympy.Expr:
        return sympy.Add(
            *(
                sympy.Float(coefficient, self.digits) * sympy.Mul(*(s**e for s, e in zip(self.symbols, monomial) if e))
                for monomial, coefficient in terms.items()
            )
        )

    def latex(self, expression: sympy.Expr) -> str:
        """LaTeX with variables typeset as x_{ball,4} rather than sympy's x_{ball 4}."""
        names = {}
        for symbol, variable in zip(self.symbols, self.variables):
            if variable.slot is None:
                escaped = variable.name.replace("_", r"\_")
                names[symbol] = rf"\mathit{{{escaped}}}"
                continue
            identifier = variable.name.split("_", 1)[1].rsplit("_", 1)[0].replace("_", r"\_")
            names[symbol] = rf"{variable.axis}_{{\mathrm{{{identifier}}},{variable.frame}}}"
        return sympy.latex(expression, symbol_names=names)

    @property
    def term_counts(self) -> list[int]:
        return [len(terms) for terms in self.terms]

    @property
    def output(self) -> str:
        """What each polynomial is: "logit", or "mean" (of a continuous action)."""
        return "mean" if self.continuous else "logit"

    @property
    def state_names(self) -> list[str]:
        """The ego state values the policy reads (none for most games)."""
        return [variable.name for variable in self.variables if variable.slot is None]

    @property
    def used_variables(self) -> list[Variable]:
        used = {index for terms in self.terms for monomial in terms for index, e in enumerate(monomial) if e}
        return [variable for index, variable in enumerate(self.variables) if index in used]

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Every distinct monomial as the indices of its factors (T, D) into the inputs with a
        constant 1 appended (index V, also the padding of shorter monomials), and the
        coefficients (A, T): thousands of terms evaluate as a few array operations."""
        monomials = sorted({monomial for terms in self.terms for monomial in terms})
        exponents = np.asarray(monomials, dtype=np.int64).reshape(len(monomials), len(self.variables))
        degree = max(int(exponents.sum(axis=1).max(initial=0)), 1)
        factors = np.full((len(monomials), degree), len(self.variables), dtype=np.int64)
        for row, powers in enumerate(exponents):
            indices = np.repeat(np.arange(len(powers)), powers)
            factors[row, : len(indices)] = indices
        position = {monomial: index for index, monomial in enumerate(monomials)}
        coefficients = np.zeros((len(self.actions), len(monomials)))
        for action, terms in enumerate(self.terms):
            for monomial, coefficient in terms.items():
                coefficients[action, position[monomial]] = coefficient
        return factors, coefficients

    def _factor_values(self, inputs: np.ndarray):
        """(B, V) -> chunks of (rows, (b, T, D) the value of every factor of every term)."""
        inputs = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
        augmented = np.concatenate([inputs, np.ones((len(inputs), 1))], axis=1)
        factors, _ = self._tables
        step = max(1, EVALUATION_ENTRIES // max(1, factors.size))
        for start in range(0, len(inputs), step):
            yield slice(start, start + step), augmented[start : start + step][:, factors]

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """(B, V) inputs -> (B, A) logits (continuous: means), from the rounded coefficients."""
        _, coefficients = self._tables
        out = np.zeros((len(inputs), len(self.actions)))
        for rows, values in self._factor_values(inputs):
            out[rows] = values.prod(axis=2) @ coefficients.T
        return out

    def act(self, coordinates: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
        """What the exported policy.py's act does: (B,) choices, or (B, A) actions in [-1, 1]."""
        return self.choose(join(coordinates, state))

    def choose(self, inputs: np.ndarray) -> np.ndarray:
        """(B, V) -> the largest logit's index (B,), or tanh of the means (B, A)."""
        scores = self.logits(inputs)
        return np.tanh(scores) if self.continuous else scores.argmax(axis=-1)

    def logit_gradients(self, inputs: np.ndarray) -> np.ndarray:
        """(B, V) -> (B, A, V): d logit_a / d variable_v (continuous: d mean_a / d variable_v), exactly.
        A term's derivative is, for each of its factors on that variable, the product of the others."""
        factors, coefficients = self._tables
        n_variables, (n_terms, degree) = len(self.variables), factors.shape
        out = np.zeros((len(inputs), len(self.actions), n_variables + 1))
        for rows, values in self._factor_values(inputs):
            for position in range(degree):
                others = np.delete(values, position, axis=2).prod(axis=2)  # (b, T)
                onto = sparse.csr_matrix(
                    (np.ones(n_terms), (np.arange(n_terms), factors[:, position])), shape=(n_terms, n_variables + 1)
                )  # term -> the variable of this factor
                weighted = (others[:, None, :] * coefficients[None]).reshape(-1, n_terms)  # (b * A, T)
                out[rows] += np.asarray(onto.T @ weighted.T).T.reshape(len(values), len(self.actions), -1)
        return out[:, :, :n_variables]  # the appended constant has no gradient to report

    def sensitivities(self, inputs: np.ndarray) -> np.ndarray:
        """(B, V) -> (B, A, V): how each variable moves each action where the agent is: d log p(a)
        / d variable with p the softmax of the logits, or (continuous) d tanh(mean_a) / d variable."""
        gradients = self.logit_gradients(inputs)
        if self.continuous:
            return (1.0 - np.tanh(self.logits(inputs)) ** 2)[:, :, None] * gradients
        # sum_c p_c (g_a - g_c) rather than g_a - sum_c p_c g_c: the same number, but where one
        # action's probability rounds to 1 the second form cancels to exactly 0
        return np.einsum(
            "bc,bacv->bav", self.probabilities(inputs), gradients[:, :, None, :] - gradients[:, None, :, :]
        )

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """(B, V) -> (B, A) the softmax of the logits (discrete games)."""
        logits = self.logits(inputs)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


def round_to(value: float, digits: int) -> float:
    """`value` to `digits` significant digits."""
    return float(f"{value:.{digits}g}")


def _pruned(weight: torch.Tensor, threshold: float) -> np.ndarray:
    array = weight.detach().double().cpu().numpy()
    return np.where(np.abs(array) >= threshold, array, 0.0)


def _arguments(actor: EqlActor, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each symbolic layer's argument weights and biases, pruned: weights below the threshold
    go, and in a one-layer actor so does every weight that moves no expanded term of any action
    by more than threshold / (2 * units). A term gets at most two such contributions per unit,
    so the pruning changes no coefficient by more than the threshold, while an expansion of
    many small terms (an actor that has barely trained) shrinks before it starts."""
    arguments = [
        (_pruned(layer.linear.weight, threshold), _pruned(layer.linear.bias, threshold)) for layer in actor.layers
    ]
    if len(actor.layers) != 1 or threshold <= 0:
        return arguments
    (weight, bias), layer = arguments[0], actor.layers[0]
    gain = np.abs(_pruned(actor.output.weight, threshold)).max(axis=0) * actor.config.inverse_temperature  # per unit
    budget = threshold / (2 * max(1, np.count_nonzero(gain)))
    largest = np.maximum(np.abs(weight).max(axis=1), np.abs(bias))  # each argument's largest coefficient
    kept = weight.copy()
    for unit, primitive in enumerate(layer.units):
        rows = layer.argument_rows(unit)
        factors = primitive.gains(largest[rows[0]], largest[rows[-1]])  # (u, u) for a unary unit
        for row, factor in zip(rows, factors):  # an argument's coefficient times the most it moves a term
            kept[row, np.abs(weight[row]) * factor * gain[unit] < budget] = 0.0
    return [(kept, bias)]


class TooManyTerms(Exception):
    """The expansion would exceed MAX_EXPANDED_TERMS terms in some logit."""

    def __init__(self, bound: int):
        super().__init__(bound)
        self.bound = bound


@dataclass(frozen=True)
class Reach:
    """What a value of the network can contain: the variables it depends on and its degree,
    combined by the primitives as the polynomials they stand for (a number reaches nothing)."""

    variables: frozenset
    degree: int

    def __add__(self, other):
        other = other if isinstance(other, Reach) else NOTHING
        return Reach(self.variables | other.variables, max(self.degree, other.degree))

    def __mul__(self, other):
        if not isinstance(other, Reach):
            return self if other else NOTHING
        return Reach(self.variables | other.variables, self.degree + other.degree)

    __radd__, __rmul__ = __add__, __mul__


NOTHING = Reach(frozenset(), 0)


def _linear(row: np.ndarray, offset: float, values: list, zero):
    """offset + sum_i row[i] * values[i] over the nonzero row entries, starting from `zero`."""
    total = zero + float(offset)
    for index in np.flatnonzero(row):
        total = total + float(row[index]) * values[index]
    return total


def term_bound(actor: EqlActor, n_variables: int, threshold: float) -> int:
    """An upper bound on the terms of the longest expanded logit, from which variables reach
    each unit and at what degree: cheap, so hopeless expansions are never started."""
    values = [Reach(frozenset([index]), 1) for index in range(n_variables)]
    for layer, (weight, _) in zip(actor.layers, _arguments(actor, threshold)):
        # the bias reaches nothing, so a row reaches what its nonzero weights' inputs reach
        values = layer.combine([_linear(row, 0.0, values, NOTHING) for row in weight])
    bounds = []
    for row in _pruned(actor.output.weight, threshold):
        reaching = [values[index] for index in np.flatnonzero(row)]
        every = sum(reaching, NOTHING)
        # no more than the monomials of each unit, nor than all monomials of that degree
        bounds.append(
            1
            + min(
                sum(math.comb(len(v.variables) + v.degree, v.degree) for v in reaching),
                math.comb(len(every.variables) + every.degree, every.degree),
            )
        )
    return max(bounds, default=1)


def expand(
    actor: EqlActor, n_variables: int, threshold: float, limit: int = MAX_EXPANDED_TERMS
) -> list[dict[Monomial, float]]:
    """The pruned actor's logits, expanded exactly: one {monomial: coefficient} per action.
    Raises TooManyTerms rather than start an expansion that could exceed `limit` terms."""
    bound = term_bound(actor, n_variables, threshold)
    if bound > limit:
        raise TooManyTerms(bound)
    if len(actor.layers) == 1:
        fast = _expand_one_layer(actor, n_variables, threshold)
        if fast is not None:
            return fast
    _, *generators = ring([f"v{index}" for index in range(n_variables)], RR)
    zero = generators[0] * 0
    values = list(generators)
    for layer, (weight, bias) in zip(actor.layers, _arguments(actor, threshold)):
        values = layer.combine([_linear(row, offset, values, zero) for row, offset in zip(weight, bias)])
    weight, bias = _pruned(actor.output.weight, threshold), _pruned(actor.output.bias, threshold)
    scale = actor.config.inverse_temperature
    logits = []
    for row, offset in zip(weight, bias):
        logit = _linear(row, offset, values, zero)
        logits.append({monomial: scale * float(coefficient) for monomial, coefficient in logit.terms()})
    return logits


DENSE_ENTRIES = 8_000_000  # the largest coefficient tensor the one-layer expansion builds


class Forms(dict):
    """A polynomial as {degree: coefficient tensor} over n variables: degree 0 a number, degree
    d an (n,) * d array whose entry [i, j, ..] multiplies y_i y_j ... Products are outer
    products, so a one-layer actor expands in numpy (about 10x faster than the ring)."""

    def __add__(self, other):
        if not isinstance(other, Forms):
            other = Forms({0: np.float64(other)})
        total = Forms(self)
        for degree, tensor in other.items():
            total[degree] = total[degree] + tensor if degree in total else tensor
        return total

    def __mul__(self, other):
        if not isinstance(other, Forms):
            return Forms({degree: tensor * other for degree, tensor in self.items()})
        product = Forms()
        for (first, a), (second, b) in itertools.product(self.items(), other.items()):
            product = product + Forms({first + second: np.multiply.outer(a, b)})
        return product

    __radd__, __rmul__ = __add__, __mul__


def _expand_one_layer(actor: EqlActor, n_variables: int, threshold: float) -> list[dict[Monomial, float]] | None:
    """expand() for a one-layer actor, in numpy: every unit is a product of at most three linear
    forms of the variables the arguments use. None when a tensor would exceed DENSE_ENTRIES."""
    (weight, bias), layer = _arguments(actor, threshold)[0], actor.layers[0]
    used = np.flatnonzero(np.any(weight != 0, axis=0))
    output = _pruned(actor.output.weight, threshold) * actor.config.inverse_temperature
    degrees = layer.combine([Reach(frozenset(), 1)] * len(weight))
    highest = max((degrees[unit].degree for unit in np.flatnonzero(output.any(axis=0))), default=1)
    if len(used) ** highest > DENSE_ENTRIES:
        return None
    arguments = [Forms({0: np.float64(offset), 1: row[used]}) for row, offset in zip(weight, bias)]
    logits = []
    for row, offset in zip(output, _pruned(actor.output.bias, threshold) * actor.config.inverse_temperature):
        logit = Forms({0: np.float64(offset)})
        for unit in np.flatnonzero(row):  # one unit at a time: a cube's tensor is large
            logit = logit + layer.units[unit].apply(*(arguments[r] for r in layer.argument_rows(unit))) * float(
                row[unit]
            )
        terms: dict[Monomial, float] = {}
        for tensor in logit.values():
            for indices, coefficient in _monomials(np.asarray(tensor)):
                exponents = [0] * n_variables
                for index in indices:
                    exponents[used[index]] += 1
                terms[tuple(exponents)] = coefficient
        logits.append({monomial: coefficient for monomial, coefficient in terms.items() if coefficient != 0.0})
    return logits


def _monomials(tensor: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    """The polynomial sum_{i,j,..} tensor[i, j, ..] y_i y_j .. as (sorted indices, coefficient)
    pairs: the coefficient of a monomial is the sum over the orderings of its indices (a
    0-dimensional tensor is the constant term, indices ())."""
    degree = tensor.ndim
    if degree == 0:
        return [((), float(tensor))]
    total = sum(tensor.transpose(order) for order in itertools.permutations(range(degree)))
    grid = np.ix_(*[np.arange(tensor.shape[0])] * degree)
    ordered = np.ones(tensor.shape, dtype=bool)
    for axis in range(1, degree):
        ordered &= grid[axis - 1] <= grid[axis]
    indices = np.nonzero(ordered & (total != 0))
    divisor, run = np.ones(len(indices[0])), np.ones(len(indices[0]))
    for axis in range(1, degree):  # the orderings that are the same tuple: prod of (multiplicity)!
        run = np.where(indices[axis] == indices[axis - 1], run + 1, 1)
        divisor *= run
    values = total[indices] / divisor
    return list(zip(zip(*(axis.tolist() for axis in indices)), values.tolist()))


@dataclass(frozen=True)
class Interface:
    """The variables the EQL actor reads and the actions it drives."""

    variables: list[Variable]
    actions: list[str]
    continuous: bool = False


def _build(
    actor: EqlActor, interface: Interface, threshold: float, digits: int, limit: int = MAX_EXPANDED_TERMS
) -> SymbolicPolicy:
    terms = []
    for logit in expand(actor, len(interface.variables), threshold, limit):
        # a term below the threshold moves its logit by less
        kept = {m: round_to(c, digits) for m, c in logit.items() if abs(c) >= threshold}
        terms.append({m: c for m, c in kept.items() if c != 0.0})
    return SymbolicPolicy(interface.variables, list(interface.actions), terms, threshold, digits, interface.continuous)


def _largest_weight(actor: EqlActor) -> float:
    return max(float(p.detach().abs().max()) for p in actor.parameters())


def extract(actor: EqlActor, interface: Interface, threshold: float, digits: int) -> SymbolicPolicy:
    """Prune, expand, drop negligible terms and round: the readable policy."""
    try:
        policy = _build(actor, interface, threshold, digits)
    except TooManyTerms as error:
        raise InsightError(
            f"--threshold {threshold:g} leaves a logit with up to {error.bound:,} terms, too many to expand or read",
            hint="prune more: a larger --threshold, or a term budget --max-terms N",
        ) from None
    if not policy.used_variables:
        raise InsightError(
            f"--threshold {threshold:g} prunes every variable from the policy "
            f"(the largest EQL weight is {_largest_weight(actor):.3g})",
            hint="use a smaller --threshold, or a term budget --max-terms N",
        )
    return policy


def extract_within(
    actor: EqlActor, interface: Interface, threshold: float, digits: int, limit: int
) -> SymbolicPolicy | None:
    """The actor pruned at `threshold` and expanded, if its term bound is at most `limit`."""
    try:
        return _build(actor, interface, threshold, digits, limit)
    except TooManyTerms:
        return None


class PruningSearch:
    """The least pruning that leaves every action at most N terms, for any number of budgets N:
    bisection over one geometric grid of thresholds from `floor` to just above the largest
    weight (where everything is pruned), assuming more pruning never adds terms. Each
    threshold is expanded at most once for all budgets, and none whose term bound exceeds
    `limit`: it counts as too many terms (a term bound that large leaves thousands)."""

    def __init__(
        self,
        actor: EqlActor,
        interface: Interface,
        digits: int,
        floor: float,
        limit: int = SEARCH_TERMS,
        steps: int = 48,
    ):
        largest = _largest_weight(actor)
        self.actor, self.interface, self.digits, self.limit = actor, interface, digits, limit
        self.grid = np.geomspace(min(max(floor, largest * 1e-6), largest), largest * 1.001, steps)
        self._policies: dict[int, SymbolicPolicy | None] = {}

    def _policy(self, index: int) -> SymbolicPolicy | None:
        """The policy pruned at grid[index]; None when its expansion could exceed the limit."""
        if index not in self._policies:
            self._policies[index] = extract_within(
                self.actor, self.interface, float(self.grid[index]), self.digits, self.limit
            )
        return self._policies[index]

    def fitting(self, max_terms: int) -> SymbolicPolicy | None:
        """The least-pruned policy whose every action has at most `max_terms` terms; None when
        every such threshold prunes every variable."""

        def pruned_enough(index: int) -> bool:
            policy = self._policy(index)
            return policy is not None and (not policy.used_variables or max(policy.term_counts) <= max_terms)

        failing, passing = -1, len(self.grid) - 1  # everything is pruned at the last threshold
        while passing - failing > 1:
            middle = (failing + passing) // 2
            if pruned_enough(middle):
                passing = middle
            else:
                failing = middle
        policy = self._policy(passing)
        return policy if policy.used_variables else None
