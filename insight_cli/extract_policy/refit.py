"""Equations fitted to the EQL actor's decisions, for when pruning the network cannot reach a
term budget at high fidelity.

The candidate terms are low-degree monomials of the variables the actor uses: the constant,
each variable, and the squares and products of the PAIRED most relevant ones (all pairs of a
hundred variables would be thousands of candidates). Greedy forward selection builds the
equations a round at a time: each action takes the candidate with the largest score-test
statistic against its residual (how surely that term would lower the loss: on decisions that
are noise, almost never Z_MIN), then every coefficient is refitted together (L-BFGS, a small L2
penalty, which also keeps coefficients finite where the decisions are separable). Rounds nest,
so the equations for a budget of N terms contain those for every smaller budget.

Discrete actions: multinomial logistic regression on the actor's choices; an action the actor
(almost) never takes gets no terms, a logit of 0 that the others' constants keep below them
(else the fit would spend its budget pushing an unused action's probability from 1% to 0.1%).
Continuous: least squares between tanh of the fitted means and the actor's actions.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from insight_cli.extract_policy.symbolic import Interface, SymbolicPolicy, round_to

PAIRED = 16  # squares and products only of this many variables, the most relevant
Z_MIN = 3.0  # the score-test statistic a term needs to enter an equation
L2 = 1e-4  # penalty on the squared coefficients, relative to the mean loss per state
MAX_ITERATIONS = 200  # L-BFGS iterations per refit, from the last round's coefficients
RARE = 0.005  # an action the actor takes in fewer of the states than this gets no terms


def candidate_monomials(kept: list[int], paired: list[int], n_variables: int) -> np.ndarray:
    """(C, V) exponents: the constant, each kept variable, and the squares and products of the
    paired ones."""
    rows = [np.zeros(n_variables, dtype=np.int64)]
    for index in kept:
        rows.append(np.zeros(n_variables, dtype=np.int64))
        rows[-1][index] = 1
    for first, second in itertools.combinations_with_replacement(paired, 2):
        rows.append(np.zeros(n_variables, dtype=np.int64))
        rows[-1][first] += 1
        rows[-1][second] += 1
    return np.stack(rows)


def monomial_values(inputs: np.ndarray, monomials: np.ndarray) -> np.ndarray:
    """(N, V) inputs and (C, V) exponents -> (N, C) the value of every monomial in every state."""
    inputs = np.asarray(inputs, dtype=np.float64)
    values = np.ones((len(inputs), len(monomials)))
    for column, powers in enumerate(monomials):
        for index in np.flatnonzero(powers):
            values[:, column] *= inputs[:, index] ** powers[index]
    return values


def targets_for(decisions: np.ndarray, n_actions: int, continuous: bool) -> np.ndarray:
    """The actor's (N,) choices as (N, A) one-hot rows; (N, A) actions as they are."""
    if continuous:
        return np.asarray(decisions, dtype=np.float64)
    return np.eye(n_actions)[np.asarray(decisions, dtype=np.int64)]


def _loss_and_residual(scores: np.ndarray, targets: np.ndarray, continuous: bool) -> tuple[float, np.ndarray]:
    """(N, A) fitted logits (means) -> the mean loss per state, and each state's gradient of
    its loss with respect to its scores (the residual)."""
    if continuous:
        actions = np.tanh(scores)
        return 0.5 * float(((actions - targets) ** 2).sum(axis=1).mean()), (actions - targets) * (1.0 - actions**2)
    return float(-(targets * log_softmax(scores, axis=1)).sum(axis=1).mean()), softmax(scores, axis=1) - targets


def scores_of_terms(features: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """(N, C) features and (N, A) residual -> (C, A) score-test statistics |sum f r| / sqrt(sum f^2 r^2)."""
    numerator = np.abs(features.T @ residual)
    denominator = np.sqrt((features**2).T @ residual**2)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 1e-12)


def fit_coefficients(
    features: np.ndarray, targets: np.ndarray, active: np.ndarray, start: np.ndarray, continuous: bool
) -> np.ndarray:
    """The (A, C) coefficients minimising the penalised loss with only the `active` (A, C) ones
    free, from `start`."""
    columns = np.flatnonzero(active.any(axis=0))
    used, mask = features[:, columns], active[:, columns]

    def objective(free: np.ndarray) -> tuple[float, np.ndarray]:
        coefficients = np.zeros(mask.shape)
        coefficients[mask] = free
        loss, residual = _loss_and_residual(used @ coefficients.T, targets, continuous)
        gradient = (residual.T @ used) / len(used) + 2 * L2 * coefficients
        return loss + L2 * float((free**2).sum()), gradient[mask]

    found = minimize(
        objective, start[:, columns][mask], jac=True, method="L-BFGS-B", options={"maxiter": MAX_ITERATIONS}
    )
    block, coefficients = np.zeros(mask.shape), np.zeros(active.shape)
    block[mask] = found.x
    coefficients[:, columns] = block
    return coefficients


def eligible(monomials: np.ndarray, active: np.ndarray) -> np.ndarray:
    """(C, V) exponents and (A, C) terms in use -> (C, A) whether each candidate may join each
    action's equation: always, up to degree 1; a square or product once one of its variables
    is a term of that equation on its own, so equations grow from readable linear terms (a
    square is otherwise a near-copy of its variable on [0, 1] and could take its place)."""
    degree = monomials.sum(axis=1)
    linear = active[:, degree == 1].astype(np.int64) @ monomials[degree == 1]  # (A, V) variables in as terms
    return (degree <= 1)[:, None] | ((monomials > 0).astype(np.int64) @ linear.T > 0)


def forward_selection(
    features: np.ndarray, monomials: np.ndarray, targets: np.ndarray, budgets: list[int], continuous: bool
) -> list[np.ndarray]:
    """(N, C) values of the (C, V) candidate monomials and (N, A) targets -> for each budget,
    ascending, the (A, C) coefficients of at most that many terms per action. An action stops
    growing when no eligible candidate reaches Z_MIN; each budget's terms include the smaller
    budgets'."""
    n_actions = targets.shape[1]
    active = np.zeros((n_actions, features.shape[1]), dtype=bool)
    coefficients = np.zeros(active.shape)
    taken = np.ones(n_actions, dtype=bool) if continuous else targets.mean(axis=0) >= RARE
    fits = []
    for budget in range(1, max(budgets) + 1):
        _, residual = _loss_and_residual(features @ coefficients.T, targets, continuous)
        closed = active.T | ~eligible(monomials, active)  # (C, A): in already, or not yet allowed
        statistics = np.where(closed, 0.0, scores_of_terms(features, residual))
        best = statistics.argmax(axis=0)
        grown = (statistics[best, np.arange(n_actions)] >= Z_MIN) & taken
        active[np.flatnonzero(grown), best[grown]] = True
        if grown.any():
            coefficients = fit_coefficients(features, targets, active, coefficients, continuous)
        if budget in budgets:
            fits.append(coefficients.copy())
    return fits


def refit(
    inputs: np.ndarray, decisions: np.ndarray, kept: list[int], interface: Interface, budgets: list[int], digits: int
) -> list[SymbolicPolicy]:
    """Equations over the `kept` variables fitted to the actor's decisions in (N, V) states,
    one policy per budget (ascending), coefficients rounded to `digits` significant digits."""
    targets = targets_for(decisions, len(interface.actions), interface.continuous)
    n_variables = len(interface.variables)
    single = monomial_values(inputs, candidate_monomials(kept, [], n_variables))[:, 1:]  # each kept variable
    _, residual = _loss_and_residual(np.zeros(targets.shape), targets, interface.continuous)
    relevance = scores_of_terms(single, residual).max(axis=1) if kept else np.zeros(0)
    paired = sorted(np.asarray(kept)[np.argsort(-relevance, kind="stable")[:PAIRED]].tolist())
    monomials = candidate_monomials(kept, paired, n_variables)
    features = monomial_values(inputs, monomials)
    fits = forward_selection(features, monomials, targets, sorted(budgets), interface.continuous)
    policies = []
    for coefficients in fits:
        terms = []
        for row in coefficients:
            rounded = {tuple(monomials[c].tolist()): round_to(row[c], digits) for c in np.flatnonzero(row)}
            terms.append({monomial: value for monomial, value in rounded.items() if value != 0.0})
        policies.append(
            SymbolicPolicy(
                interface.variables, list(interface.actions), terms, 0.0, digits, interface.continuous, method="refit"
            )
        )
    return policies
