from dataclasses import asdict

import numpy as np
import pytest
from support import toward_the_ball

from insight_cli.explain.faithfulness import (
    Statement,
    check_decision_text,
    check_policy_text,
    counterfactual,
    disagreements,
    read_text,
    summarise,
)
from insight_cli.extract_policy.symbolic import Interface, SymbolicPolicy, extract, variables_for

OBJECTS, ACTIONS = ["ball", "paddle"], ["NOOP", "RIGHT", "LEFT"]
INTERFACE = Interface(variables_for(OBJECTS), ACTIONS)
POLICY = extract(toward_the_ball(OBJECTS, noise=0.0), INTERFACE, threshold=0.01, digits=3)
REFERENCE = np.random.default_rng(0).random((20, 2, 4, 2))


def verdicts(text, action=None):
    return [(c.variable, c.action, c.direction, c.verdict) for c in check_policy_text(text, POLICY, REFERENCE, action)]


def test_true_false_and_empty_claims():
    assert verdicts("x_ball_4 raises the logit of RIGHT, while x_paddle_4 lowers it.") == [
        ("x_ball_4", "RIGHT", "raises", "supported"),
        ("x_paddle_4", "RIGHT", "lowers", "supported"),
    ]
    assert verdicts("A larger `x_paddle_4` makes LEFT more likely; x_ball_4 increases LEFT.") == [
        ("x_paddle_4", "LEFT", "raises", "supported"),
        ("x_ball_4", "LEFT", "raises", "contradicted"),
    ]
    assert verdicts("y_ball_2 raises the logit.", action="RIGHT") == [("y_ball_2", "RIGHT", "raises", "unsupported")]
    assert verdicts("x_enemy_4 lowers RIGHT.") == [("x_enemy_4", "RIGHT", "lowers", "unsupported")]


def test_unclear_clauses_are_skipped_not_guessed():
    assert verdicts("x_ball_4 does not raise RIGHT.") == []
    assert verdicts("x_ball_4 raises RIGHT and lowers LEFT.") == []  # both directions in one clause
    assert verdicts("RIGHT depends on x_ball_4.") == []  # no direction
    assert verdicts("The ball moves right.") == []  # no variable


def test_decimals_do_not_split_a_claim():
    assert verdicts("Increasing x_ball_4 (now 0.58) raises RIGHT (slope +10.0).") == [
        ("x_ball_4", "RIGHT", "raises", "supported")
    ]


def test_decision_claims_use_the_gradient_in_that_state():
    state = np.zeros((2, 4, 2))
    state[0, 3, 0], state[1, 3, 0] = 0.8, 0.2  # ball right of the paddle: RIGHT
    sensitivities = POLICY.sensitivities(state[None])[0]
    claims = check_decision_text(
        "x_ball_4 raises the probability of RIGHT; x_paddle_4 raises it too.", POLICY, sensitivities, "RIGHT"
    )
    assert [c.verdict for c in claims] == ["supported", "contradicted"]
    summary = summarise([asdict(c) for c in claims])
    assert (
        summary["claims"] == 2 and summary["contradicted"] == 1 and summary["problems"][0]["variable"] == "x_paddle_4"
    )


def test_actions_named_inside_parentheses_are_asides():
    assert verdicts("x_ball_4 (the ball, as LEFT (moving) sees it) raises the logit.", action="RIGHT") == [
        ("x_ball_4", "RIGHT", "raises", "supported")
    ]


def test_a_list_under_a_header_takes_the_headers_direction():
    assert verdicts("The variables that raise their logits are:\n- x_ball_4\n- `x_paddle_4` (the paddle)", "RIGHT") == [
        ("x_ball_4", "RIGHT", "raises", "supported"),
        ("x_paddle_4", "RIGHT", "raises", "contradicted"),
    ]
    assert verdicts("Variables that lower the logit of LEFT: x_ball_4 and x_paddle_4.") == [
        ("x_ball_4", "LEFT", "lowers", "supported"),
        ("x_paddle_4", "LEFT", "lowers", "contradicted"),
    ]
    assert verdicts("Raises RIGHT:\n- x_ball_4\nThat is all.\n- x_paddle_4") == [
        ("x_ball_4", "RIGHT", "raises", "supported")
    ]


def test_list_items_that_are_conditions_are_not_read_as_claims():
    assert verdicts("RIGHT becomes more likely when:\n- x_ball_4 is larger than x_paddle_4\n- x_ball_4 is small") == []


def test_only_a_negated_direction_skips_a_clause():
    assert verdicts("x_ball_4 raises RIGHT, so the agent does not wait.") == [
        ("x_ball_4", "RIGHT", "raises", "supported")
    ]
    assert verdicts("x_ball_4 raises RIGHT, not LEFT.") == [("x_ball_4", "RIGHT", "raises", "supported")]
    assert verdicts("x_ball_4 never makes RIGHT more likely.") == []
    assert verdicts("x_ball_4 doesn't lower RIGHT.") == []


def test_signed_numbers_give_the_direction():
    assert verdicts("Slopes of logit_RIGHT: x_ball_4: +50.7, x_paddle_4: -86.1", "RIGHT") == [
        ("x_ball_4", "RIGHT", "raises", "supported"),
        ("x_paddle_4", "RIGHT", "lowers", "supported"),
    ]
    assert verdicts("x_paddle_4 (slope +3.2) lowers RIGHT.") == []  # the number and the word disagree
    assert verdicts("If x_ball_4 - x_paddle_4 < -0.03: LEFT.") == []  # a comparison, not a slope


def test_a_counterfactual_step_on_a_known_polynomial():
    names = [v.name for v in INTERFACE.variables]

    def monomial(name):
        return tuple(int(n == name) for n in names)

    right = {monomial("x_ball_4"): 3.0, monomial("x_paddle_4"): -2.0, monomial("y_ball_4"): 0.1}
    policy = SymbolicPolicy(INTERFACE.variables, ACTIONS, [{}, right, {m: -c for m, c in right.items()}], 0.0, 3)
    state = np.zeros(len(names))
    state[names.index("x_ball_4")], state[names.index("x_paddle_4")] = 0.6, 0.4

    def p_right(logit):
        return np.exp(logit) / (1 + np.exp(logit) + np.exp(-logit))

    test = counterfactual(policy, state, "y_ball_4", "RIGHT", "raises", step=0.05)
    before, after = p_right(3 * 0.6 - 2 * 0.4), p_right(3 * 0.6 - 2 * 0.4 + 0.1 * 0.05)
    assert test["before"] == pytest.approx(before) and test["change"] == pytest.approx(after - before)
    assert test["verdict"] == "confirmed" and test["largest"] == "x_ball_4"
    assert counterfactual(policy, state, "x_paddle_4", "RIGHT", "raises")["verdict"] == "refuted"
    assert counterfactual(policy, state, "x_ball_3", "RIGHT", "raises")["verdict"] == "no change"


def test_the_prose_disagrees_where_the_claims_block_says_otherwise_or_nothing():
    block = [Statement("", "x_ball_4", "RIGHT", "raises", "json")]
    prose = read_text("x_ball_4 raises RIGHT; x_paddle_4 lowers it. x_ball_4 lowers LEFT.", ACTIONS, None)
    assert [(d["variable"], d["action"], d["prose"], d["claims_block"]) for d in disagreements(block, prose)] == [
        ("x_paddle_4", "RIGHT", "lowers", None),
        ("x_ball_4", "LEFT", "lowers", None),
    ]
    assert disagreements([Statement("", "x_ball_4", "RIGHT", "lowers", "json")], prose[:1])[0]["claims_block"] == [
        "lowers"
    ]
