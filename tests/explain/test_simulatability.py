import numpy as np
from support import toward_the_ball

from insight_cli.explain import decision_list
from insight_cli.explain.backends import Reply
from insight_cli.explain.prompts import reader_state
from insight_cli.explain.simulatability import score, simulate
from insight_cli.extract_policy.symbolic import Interface, extract, variables_for

OBJECTS, ACTIONS = ["ball", "paddle"], ["NOOP", "RIGHT", "LEFT"]
POLICY = extract(
    toward_the_ball(OBJECTS, noise=0.0), Interface(variables_for(OBJECTS), ACTIONS), threshold=0.01, digits=3
)
STATES = np.round(np.random.default_rng(0).random((30, 16)), 3)  # as the reader prompt shows them: 3 decimals


class Always:
    def __init__(self, action):
        self.action = action

    def predict(self, system, prompt, schema):
        return Reply(f'{{"action": "{self.action}"}}')


class Perfect:
    """Reads the state off the prompt and evaluates the equations: what a perfect explanation allows."""

    def predict(self, system, prompt, schema):
        _, state = reader_state(prompt)
        inputs = np.array([state.get(v.name, 0.0) for v in POLICY.variables])
        return Reply(ACTIONS[POLICY.choose(inputs[None])[0]])


def test_a_reader_that_always_answers_the_majority_action_scores_its_share():
    chosen = [ACTIONS[c] for c in POLICY.choose(STATES)]
    majority = max(set(chosen), key=chosen.count)
    records, result = simulate(Always(majority), POLICY, "Whatever.", STATES)
    assert result["accuracy"] == result["majority"] == chosen.count(majority) / len(chosen)
    assert result["majority_action"] == majority and result["chance"] == 1 / 3 and result["states"] == 30
    assert records[0]["predicted"] == majority and set(records[0]["values"]) == {"x_ball_4", "x_paddle_4"}


def test_a_perfect_reader_scores_everything():
    records, result = simulate(Perfect(), POLICY, "Whatever.", STATES)
    assert result["accuracy"] == 1.0 and all(r["predicted"] == r["equations"] for r in records)


def test_a_reader_that_names_no_action_is_wrong():
    assert score([None, "LEFT"], ["LEFT", "LEFT"], ACTIONS)["accuracy"] == 0.5


def test_a_decision_list_reads_back_as_written_and_decides_like_the_equations():
    rules, default = decision_list.learn(POLICY, STATES, POLICY.choose(STATES))
    text = "Some prose first.\n\n" + decision_list.render(rules, default)
    assert decision_list.read(text, ACTIONS) == (rules, default)
    held_out = np.round(np.random.default_rng(1).random((200, 16)), 3)
    names = [v.name for v in POLICY.variables]
    predicted = [decision_list.apply(rules, default, dict(zip(names, row))) for row in held_out]
    agree = np.mean([p == ACTIONS[c] for p, c in zip(predicted, POLICY.choose(held_out))])
    assert rules[0].minus is not None and agree >= 0.9  # a condition on where the ball is relative to the paddle
