"""Every prompt `insight explain` sends, in the paper's structure: a shared context (the task,
the actions, the coordinate convention, the variable names, the equations and how they make an
action), a policy dialogue (one question per action, then a summary) and one prompt per
decision (the action taken, the relevant variables' values and how each moves the action: the
gradient of its log-probability, or for continuous actions of the action value itself). Every
answer ends with its claims as JSON (see `structured`). A simulatability reader gets one more
prompt per state: the explanation and that state's values, not the equations."""

from __future__ import annotations

import re

import numpy as np

from insight_cli.explain.decisions import Decision, gradient_table
from insight_cli.extract_policy.symbolic import SymbolicPolicy
from insight_cli.games import GameSpec
from insight_cli.perception import COORDINATE_CONVENTION

STATE_HEADER = "The current state:"  # before a reader prompt's variable values, one "- name = value" a line


def context(game: GameSpec, policy: SymbolicPolicy) -> str:
    actions = "\n".join(f"- {name}: {game.actions.get(name, name.lower())}" for name in policy.actions)
    variables = "\n".join(f"- {v.name}: {v.meaning}" for v in policy.used_variables)
    kind = policy.output
    equations = "\n".join(
        f"{kind}_{name} = {expression}" for name, expression in zip(policy.actions, policy.expressions)
    )
    naming = (
        "Variables are named <axis>_<object>_<frame>: x_ball_4 is the horizontal position of the ball in the "
        "current frame."
    )
    if policy.state_names:
        naming += (
            f" The variables named without an axis ({', '.join(policy.state_names[:2])}, ...) are values of the "
            "ego state, each scaled to [0, 1]."
        )
    if policy.continuous:
        rule = (
            "Every action is a number in [-1, 1] set at every step: action = tanh(mean) of its equation, so a larger "
            "mean gives a larger action value."
        )
        moves = "raises or lowers an action (its mean)"
    else:
        rule = (
            "The probability of action a is the softmax of the logits, p(a) = exp(logit_a) / sum_b exp(logit_b); "
            "the agent takes the action with the largest logit."
        )
        moves = "raises or lowers a logit or a probability"
    return f"""You explain the behaviour of an agent that plays the game {game.name}.

Task: {game.task}

Actions:
{actions}

{COORDINATE_CONVENTION} {naming}
The variables the policy uses:
{variables}

The policy gives every action a {kind}:
{equations}

{rule}

When you state a claim, name variables by their identifiers (such as x_ball_4) and actions by their names (such as {policy.actions[-1]}), and say whether a variable {moves}. Ground every claim in the equations and the numbers you are given."""


def policy_questions(game: GameSpec, policy: SymbolicPolicy) -> list[str]:
    """One question per action, then one for the summary: a dialogue, asked in order."""
    if policy.continuous:
        questions = [
            f"Explain the action {name} ({game.actions.get(name, name)}). Which variables raise it and which lower it? "
            f"Which are the most influential? When is {name} high and when is it low?"
            for name in policy.actions
        ]
    else:
        questions = [
            f"Explain the action {name} ({game.actions.get(name, name.lower())}). Which variables raise its logit and "
            f"which lower it? Which are the most influential? When does the agent choose {name}?"
            for name in policy.actions
        ]
    questions.append("Summarise the policy in a few sentences: what strategy does the agent follow?")
    return [f"{question}\n\n{_claims_instruction(policy)}" for question in questions]


def _claims_instruction(policy: SymbolicPolicy, number: int | None = None) -> str:
    """What the claims block after an answer holds; `number`: a decision's. Placeholders, not an
    example claim: a small model copies an example, and a copied claim would be counted as its own."""
    claim = (
        f'"variable": "<variable>", "action": "<one of {", ".join(policy.actions)}>", "direction": "<raises or lowers>"'
    )
    if number is None:
        block, effect = f'{{"claims": [{{{claim}}}, ...]}}', f"its effect on the action's {policy.output}"
    else:
        block = f'{{"claims": [{{{claim}, "state": {number}}}, ...], "most_influential": "<variable>"}}'
        moved = "that action's value" if policy.continuous else "the probability of that action"
        effect = (
            f"its effect on {moved}; state is this decision's number, {number}; most_influential is the variable "
            "that moves the action taken most here"
        )
    return (
        "After your answer, give every claim you made about a variable as JSON in a fenced block:\n"
        f'```json\n{block}\n```\nwhere direction is "raises" or "lowers" ({effect}).'
    )


def decision_prompt(policy: SymbolicPolicy, decision: Decision, number: int) -> str:
    """The prompt about decision `number` (1, 2, ...)."""
    relevant = decision.relevant(policy)
    if policy.continuous:
        rows = [(policy.variables[i].name, decision.inputs[i], decision.gradients[:, i]) for i in relevant]
        table = "\n".join(gradient_table(rows, [f"d {name}" for name in policy.actions]))
        return f"""Decision {number}: in the current state the agent set {decision.summary(policy)}.
The relevant variables, their values and the gradient of each action value with respect to each (a positive gradient means that increasing the variable raises that action):

{table}

Explain concisely and specifically why the agent acted like this here, grounded only in the equations, these values and these gradients.

{_claims_instruction(policy, number)}"""
    name = policy.actions[decision.action]
    rows = [(policy.variables[i].name, decision.inputs[i], [decision.gradients[decision.action, i]]) for i in relevant]
    table = "\n".join(gradient_table(rows, ["gradient"]))
    probabilities = ", ".join(f"{a} {p:.3f}" for a, p in zip(policy.actions, decision.probabilities))
    return f"""Decision {number}: in the current state the agent took the action {name} (probabilities: {probabilities}).
The relevant variables, their values and the gradient of log p({name}) with respect to each (a positive gradient means that increasing the variable makes {name} more likely):

{table}

Explain concisely and specifically why the agent took {name} here, grounded only in the equations, these values and these gradients.

{_claims_instruction(policy, number)}"""


READER_SYSTEM = (
    "You predict what an agent does from an explanation of its policy. You see the explanation and one "
    "state, not the policy's equations."
)


def reader_prompt(policy: SymbolicPolicy, explanation: str, inputs: np.ndarray) -> str:
    """One state for a simulatability reader: the explanation, then the (V,) state's values of
    the variables the equations use."""
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    values = "\n".join(f"- {v.name} = {inputs[index[v.name]]:.3f} ({v.meaning})" for v in policy.used_variables)
    return f"""Predict the agent's action from this explanation of its policy.

Explanation:
{explanation}

{COORDINATE_CONVENTION}
{STATE_HEADER}
{values}

Which action does the agent take? Answer with its name only: one of {", ".join(policy.actions)}."""


def reader_state(prompt: str) -> tuple[str, dict[str, float]]:
    """A reader prompt split into what comes before its state and the state's values (name -> value)."""
    before, _, state = prompt.rpartition(STATE_HEADER)
    return before, {m[1]: float(m[2]) for m in re.finditer(r"^- (\S+) = (-?\d+(?:\.\d+)?)", state, re.M)}
