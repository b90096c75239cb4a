import time

import numpy as np

from insight_cli.extract_policy.refit import candidate_monomials, eligible, monomial_values, refit
from insight_cli.extract_policy.symbolic import Interface, variables_for
from insight_cli.extract_policy.tradeoff import BUDGETS, fidelity

OBJECTS, ACTIONS = ["ball", "paddle", "wall", "bird"], ["NOOP", "RIGHT", "LEFT"]
INTERFACE = Interface(variables_for(OBJECTS), ACTIONS)
NAMES = [variable.name for variable in INTERFACE.variables]
EVERY = list(range(len(NAMES)))


def toward_the_ball(inputs: np.ndarray) -> np.ndarray:
    """(N, 3) logits of the known policy: RIGHT = 10 (x_ball_4 - x_paddle_4), LEFT its negative."""
    gap = inputs[:, NAMES.index("x_ball_4")] - inputs[:, NAMES.index("x_paddle_4")]
    return np.stack([np.zeros(len(inputs)), 10 * gap, -10 * gap], axis=1)


def noisy_decisions(inputs: np.ndarray, rng, flipped: float = 0.1) -> np.ndarray:
    """The known policy's choices with a share of them replaced by random actions."""
    decisions = toward_the_ball(inputs).argmax(axis=1)
    flip = rng.random(len(decisions)) < flipped
    decisions[flip] = rng.integers(0, len(ACTIONS), flip.sum())
    return decisions


def test_the_refit_recovers_a_known_sparse_policy_from_noisy_decisions():
    rng = np.random.default_rng(0)
    inputs = rng.random((3000, len(NAMES)))
    (policy,) = refit(inputs, noisy_decisions(inputs, rng), EVERY, INTERFACE, [3], digits=3)
    assert policy.method == "refit" and max(policy.term_counts) <= 3
    assert {variable.name for variable in policy.used_variables} == {"x_ball_4", "x_paddle_4"}
    fresh = rng.random((2000, len(NAMES)))  # states the fit never saw
    assert np.mean(policy.choose(fresh) == toward_the_ball(fresh).argmax(axis=1)) >= 0.98
    # Logits are defined up to a common shift, so read the difference: RIGHT over LEFT grows
    # with the ball's x and shrinks with the paddle's.
    gradients = policy.logit_gradients(fresh).mean(axis=0)
    preference = gradients[ACTIONS.index("RIGHT")] - gradients[ACTIONS.index("LEFT")]
    assert preference[NAMES.index("x_ball_4")] > 5 and preference[NAMES.index("x_paddle_4")] < -5


def test_larger_budgets_keep_the_smaller_budgets_terms():
    rng = np.random.default_rng(1)
    inputs = rng.random((1500, len(NAMES)))
    decisions = (toward_the_ball(inputs) + rng.gumbel(size=(len(inputs), 3)) * 3).argmax(axis=1)
    policies = refit(inputs, decisions, EVERY, INTERFACE, [1, 2, 3, 5, 10], digits=6)
    for smaller, larger, budget in zip(policies, policies[1:], [2, 3, 5, 10]):
        assert max(larger.term_counts) <= budget
        assert all(set(few) <= set(many) for few, many in zip(smaller.terms, larger.terms))


def test_only_the_kept_variables_appear():
    rng = np.random.default_rng(2)
    inputs = rng.random((1000, len(NAMES)))
    kept = [NAMES.index(name) for name in ("x_ball_4", "y_ball_4", "x_bird_4")]  # the paddle is left out
    (policy,) = refit(inputs, noisy_decisions(inputs, rng), kept, INTERFACE, [5], digits=3)
    assert {variable.name for variable in policy.used_variables} <= {"x_ball_4", "y_ball_4", "x_bird_4"}


def test_decisions_that_are_noise_earn_next_to_no_terms():
    rng = np.random.default_rng(3)
    inputs = rng.random((2000, len(NAMES)))
    (policy,) = refit(inputs, rng.integers(0, 3, len(inputs)), EVERY, INTERFACE, [10], digits=3)
    assert sum(policy.term_counts) <= 2  # of the 30 allowed: a chance correlation at most


def test_continuous_actions_are_fitted_through_tanh():
    rng = np.random.default_rng(4)
    interface = Interface(variables_for(["ball"], {"ego_speed": "speed"}), ["steering", "throttle"], continuous=True)
    names = [variable.name for variable in interface.variables]
    inputs = rng.random((2000, len(names)))
    ball, speed = inputs[:, names.index("x_ball_4")], inputs[:, names.index("ego_speed")]
    actions = np.tanh(np.stack([3 * ball - 1.5, 2 - 4 * speed], axis=1))
    (policy,) = refit(inputs, actions, list(range(len(names))), interface, [2], digits=4)
    assert policy.continuous and [v.name for v in policy.used_variables] == ["x_ball_4", "ego_speed"]
    assert [sorted(sum(m) for m in terms) for terms in policy.terms] == [[0, 1], [0, 1]]  # a constant and a variable
    coordinates, state = inputs[:50, :8].reshape(50, 1, 4, 2), inputs[:50, 8:]
    np.testing.assert_allclose(policy.act(coordinates, state), actions[:50], atol=0.02)


def test_squares_and_products_follow_a_linear_term_of_their_variable():
    monomials = candidate_monomials([0, 1, 2], [0, 1], n_variables=3)
    assert len(monomials) == 1 + 3 + 3  # constant, three variables, x0^2 x0*x1 x1^2
    active = np.zeros((2, len(monomials)), dtype=bool)
    active[0, 1] = True  # action 0 has x0 on its own
    allowed = eligible(monomials, active)
    squares = {tuple(m): row for m, row in zip(monomials.tolist(), allowed.tolist())}
    assert squares[(2, 0, 0)] == squares[(1, 1, 0)] == [True, False]  # x0 is in action 0's equation
    assert squares[(0, 2, 0)] == [False, False]
    assert allowed[: 1 + 3].all()  # the constant and every variable, always


def test_monomial_values():
    inputs = np.array([[2.0, 3.0]])
    np.testing.assert_allclose(monomial_values(inputs, np.array([[0, 0], [1, 0], [2, 1]])), [[1.0, 2.0, 12.0]])


def test_a_refit_takes_seconds_on_pong_sized_inputs():
    rng = np.random.default_rng(5)
    interface = Interface(variables_for([f"o{i}" for i in range(19)]), list("abcdef"))
    inputs = rng.random((6000, 152))  # what a refit gathers: dataset states and three rounds of rollouts
    decisions = (inputs[:, :6] * 10 + rng.gumbel(size=(6000, 6))).argmax(axis=1)
    start = time.perf_counter()
    policies = refit(inputs, decisions, list(range(152)), interface, list(BUDGETS), digits=3)
    assert time.perf_counter() - start < 30  # generous: about 2 s on one core
    assert all(max(policy.term_counts) <= budget for policy, budget in zip(policies, BUDGETS))


def test_choices_with_the_same_effect_agree_and_their_alias_gets_no_equation():
    # ACTIONS + an alias of RIGHT that the actor picks half the time it moves right
    names = [*ACTIONS, "RIGHTFIRE"]
    effects = np.array([0, 1, 2, 1])
    rng = np.random.default_rng(1)
    inputs = rng.random((3000, len(NAMES)))
    choices = toward_the_ball(inputs).argmax(axis=1)
    choices[(choices == 1) & (rng.random(len(choices)) < 0.5)] = 3
    interface = Interface(INTERFACE.variables, names)
    (policy,) = refit(inputs, effects[choices], EVERY, interface, [3], digits=3)
    assert policy.term_counts[3] == 0  # the alias: its effect is RIGHT's, which has the terms
    fresh = rng.random((2000, len(NAMES)))
    truth = toward_the_ball(fresh).argmax(axis=1)
    picked = policy.choose(fresh)
    strict = fidelity(policy, fresh, truth, "test")["test_fidelity"]
    by_effect = fidelity(policy, fresh, truth, "test", effects)["test_fidelity"]
    assert by_effect >= 0.98 and by_effect >= strict
    assert np.mean(effects[picked] == truth) == by_effect


def test_fidelity_counts_an_alias_as_the_action_it_stands_for():
    names, effects = [*ACTIONS, "RIGHTFIRE"], np.array([0, 1, 2, 1])
    rng = np.random.default_rng(2)
    inputs = rng.random((3000, len(NAMES)))
    choices = toward_the_ball(inputs).argmax(axis=1)
    choices[choices == 1] = 3  # equations that always move right by the alias
    (policy,) = refit(inputs, choices, EVERY, Interface(INTERFACE.variables, names), [3], digits=3)
    fresh = rng.random((2000, len(NAMES)))
    truth = toward_the_ball(fresh).argmax(axis=1)  # the actor's decisions, as effects
    assert fidelity(policy, fresh, truth, "test")["test_fidelity"] <= 0.7
    assert fidelity(policy, fresh, truth, "test", effects)["test_fidelity"] >= 0.97
