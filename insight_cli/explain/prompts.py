"""Every prompt `insight explain` sends, in the paper's structure: a shared context (the task,
the actions, the coordinate convention, the variable names, the logit equations and the
softmax), a policy dialogue (one question per action, then a summary) and one prompt per
decision (the action taken, the relevant variables' values and the gradients of the
log-probability of that action)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insight_cli.extract_policy.symbolic import COORDINATE_CONVENTION, SymbolicPolicy
from insight_cli.games import GameSpec

DECISION_VARIABLES = 8  # the relevant variables a decision prompt lists, largest gradient first


@dataclass
class Decision:
    """One state the agent acted in, and what the equations say about it."""

    source: str  # e.g. "rollout step 17" or "dataset frame 40"
    rgb: np.ndarray  # (H, W, 3) the full frame
    coordinates: np.ndarray  # (K, 4, 2) what the perception CNN predicted
    action: int
    probabilities: np.ndarray  # (A,) softmax of the logits
    gradients: np.ndarray  # (V,) d log p(action) / d variable

    def relevant(self, policy: SymbolicPolicy) -> list[int]:
        """Indices of the variables the equations use, by |gradient|, largest first."""
        used = {variable.name for variable in policy.used_variables}
        indices = [i for i, variable in enumerate(policy.variables) if variable.name in used]
        return sorted(indices, key=lambda i: -abs(self.gradients[i]))[:DECISION_VARIABLES]


def context(game: GameSpec, policy: SymbolicPolicy) -> str:
    actions = "\n".join(f"- {name}: {game.actions.get(name, name.lower())}" for name in policy.actions)
    variables = "\n".join(f"- {v.name}: {v.meaning}" for v in policy.used_variables)
    equations = "\n".join(f"logit_{name} = {expression}" for name, expression in zip(policy.actions, policy.expressions))
    return f"""You explain the behaviour of an agent that plays the game {game.name}.

Task: {game.task}

Actions:
{actions}

{COORDINATE_CONVENTION} Variables are named <axis>_<object>_<frame>: x_ball_4 is the horizontal position of the ball in the current frame.
The variables the policy uses:
{variables}

The policy gives every action a logit:
{equations}

The probability of action a is the softmax of the logits, p(a) = exp(logit_a) / sum_b exp(logit_b); the agent takes the action with the largest logit.

When you state a claim, name variables by their identifiers (such as x_ball_4) and actions by their names (such as {policy.actions[-1]}), and say whether a variable raises or lowers a logit or a probability. Ground every claim in the equations and the numbers you are given."""


def policy_questions(game: GameSpec, policy: SymbolicPolicy) -> list[str]:
    """One question per action, then one for the summary: a dialogue, asked in order."""
    questions = [
        f"Explain the action {name} ({game.actions.get(name, name.lower())}). Which variables raise its logit and "
        f"which lower it? Which are the most influential? When does the agent choose {name}?"
        for name in policy.actions
    ]
    questions.append("Summarise the policy in a few sentences: what strategy does the agent follow?")
    return questions


def decision_prompt(policy: SymbolicPolicy, decision: Decision) -> str:
    name = policy.actions[decision.action]
    rows = "\n".join(
        f"| {policy.variables[i].name} | {decision.coordinates.reshape(-1)[i]:.3f} | {decision.gradients[i]:+.3f} |"
        for i in decision.relevant(policy)
    )
    probabilities = ", ".join(f"{a} {p:.3f}" for a, p in zip(policy.actions, decision.probabilities))
    return f"""In the current state the agent took the action {name} (probabilities: {probabilities}).
The relevant variables, their values and the gradient of log p({name}) with respect to each (a positive gradient means that increasing the variable makes {name} more likely):

| variable | value | gradient |
| --- | --- | --- |
{rows}

Explain concisely and specifically why the agent took {name} here, grounded only in the equations, these values and these gradients."""
