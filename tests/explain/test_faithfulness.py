import numpy as np
from support import toward_the_ball

from insight_cli.explain.faithfulness import check_decision_text, check_policy_text, summarise
from insight_cli.extract_policy.symbolic import Interface, extract, variables_for

OBJECTS, ACTIONS = ["ball", "paddle"], ["NOOP", "RIGHT", "LEFT"]
INTERFACE = Interface(variables_for(OBJECTS), ACTIONS)
POLICY = extract(toward_the_ball(OBJECTS, noise=0.0), INTERFACE, threshold=0.01, digits=3)
REFERENCE = np.random.default_rng(0).random((20, 2, 4, 2))


def verdicts(text, action=None):
    return [(c.variable, c.action, c.direction, c.verdict) for c in check_policy_text(text, POLICY, REFERENCE, action)]


def test_true_false_and_empty_claims():
    assert verdicts("x_ball_4 raises the logit of RIGHT, while x_paddle_4 lowers it.") == [
        ("x_ball_4", "RIGHT", "raises", "supported"), ("x_paddle_4", "RIGHT", "lowers", "supported")]
    assert verdicts("A larger `x_paddle_4` makes LEFT more likely; x_ball_4 increases LEFT.") == [
        ("x_paddle_4", "LEFT", "raises", "supported"), ("x_ball_4", "LEFT", "raises", "contradicted")]
    assert verdicts("y_ball_2 raises the logit.", action="RIGHT") == [("y_ball_2", "RIGHT", "raises", "unsupported")]
    assert verdicts("x_enemy_4 lowers RIGHT.") == [("x_enemy_4", "RIGHT", "lowers", "unsupported")]


def test_unclear_clauses_are_skipped_not_guessed():
    assert verdicts("x_ball_4 does not raise RIGHT.") == []
    assert verdicts("x_ball_4 raises RIGHT and lowers LEFT.") == []  # both directions in one clause
    assert verdicts("RIGHT depends on x_ball_4.") == []  # no direction
    assert verdicts("The ball moves right.") == []  # no variable


def test_decimals_do_not_split_a_claim():
    assert verdicts("Increasing x_ball_4 (now 0.58) raises RIGHT (slope +10.0).") == [
        ("x_ball_4", "RIGHT", "raises", "supported")]


def test_decision_claims_use_the_gradient_in_that_state():
    state = np.zeros((2, 4, 2))
    state[0, 3, 0], state[1, 3, 0] = 0.8, 0.2  # ball right of the paddle: RIGHT
    sensitivities = POLICY.sensitivities(state[None])[0]
    claims = check_decision_text("x_ball_4 raises the probability of RIGHT; x_paddle_4 raises it too.", POLICY, sensitivities,
                                 "RIGHT")
    assert [c.verdict for c in claims] == ["supported", "contradicted"]
    summary = summarise(claims)
    assert summary["claims"] == 2 and summary["contradicted"] == 1 and summary["problems"][0]["variable"] == "x_paddle_4"


def test_actions_named_inside_parentheses_are_asides():
    assert verdicts("x_ball_4 (the ball, as LEFT (moving) sees it) raises the logit.", action="RIGHT") == [
        ("x_ball_4", "RIGHT", "raises", "supported")]
