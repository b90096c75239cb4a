"""A single decision the agent made, with what the equations say about it: the state, the
action and the gradient of each action's score with respect to each variable there."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insight_cli.extract_policy.symbolic import SymbolicPolicy, join

DECISION_VARIABLES = 8  # the relevant variables a decision prompt lists, largest gradient first


@dataclass
class Decision:
    """One state the agent acted in, and what the equations say about it."""

    source: str  # e.g. "rollout step 17" or "dataset frame 40"
    rgb: np.ndarray  # (H, W, 3) the full frame
    coordinates: np.ndarray  # (K, 4, 2) what the perception CNN predicted
    inputs: np.ndarray  # (V,) every variable's value: the coordinates, then the ego state
    action: int | np.ndarray  # the choice, or (A,) action values in [-1, 1]
    probabilities: np.ndarray | None  # (A,) softmax of the logits; None for continuous actions
    gradients: np.ndarray  # (A, V) SymbolicPolicy.sensitivities in this state

    def relevant(self, policy: SymbolicPolicy) -> list[int]:
        """Indices of the variables the equations use, by how much they move the action taken
        (continuous: any action), largest first."""
        used = {variable.name for variable in policy.used_variables}
        indices = [i for i, variable in enumerate(policy.variables) if variable.name in used]
        return sorted(indices, key=lambda i: -abs(self.gradients[self.strongest(policy, i), i]))[:DECISION_VARIABLES]

    def strongest(self, policy: SymbolicPolicy, variable: int) -> int:
        """The action this variable moves most here (the action taken, for discrete games)."""
        return int(np.argmax(np.abs(self.gradients[:, variable]))) if policy.continuous else int(self.action)

    def summary(self, policy: SymbolicPolicy) -> str:
        """ "steering +0.31, throttle +0.80" or "RIGHT (p=0.93)"."""
        if policy.continuous:
            return ", ".join(f"{name} {value:+.2f}" for name, value in zip(policy.actions, self.action))
        return f"{policy.actions[self.action]} (p={self.probabilities[self.action]:.2f})"


def decide(
    policy: SymbolicPolicy, source: str, rgb: np.ndarray, coordinates: np.ndarray, state: np.ndarray | None
) -> Decision:
    """What the equations do and why in one state: (K, 4, 2) coordinates and the (S,) ego state
    (None unless the policy reads one)."""
    inputs = join(coordinates[None], None if state is None else state[None])
    action = policy.choose(inputs)[0]
    probabilities = None if policy.continuous else policy.probabilities(inputs)[0]
    return Decision(
        source,
        rgb,
        coordinates,
        inputs[0],
        action if policy.continuous else int(action),
        probabilities,
        policy.sensitivities(inputs)[0],
    )


def gradient_table(rows: list[tuple[str, float, list[float]]], columns: list[str], quote: str = "") -> list[str]:
    """A Markdown table of variables, their values and gradients (one column each of `columns`):
    the same for the prompt and for explanation.md (there with names `quote`d as code)."""
    return [
        "| variable | value | " + " | ".join(columns) + " |",
        "| --- " * (len(columns) + 2) + "|",
        *(
            f"| {quote}{name}{quote} | {value:.3f} | " + " | ".join(f"{g:+.3f}" for g in gradients) + " |"
            for name, value, gradients in rows
        ),
    ]
