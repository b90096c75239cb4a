"""Simulatability: can a reader who sees only the explanation (not the equations) and one state
predict what the equations do there? Scored over held-out states against chance (1/A) and the
majority-action baseline (always answering the equations' most frequent choice)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from insight_cli.explain import structured
from insight_cli.explain.prompts import READER_SYSTEM, reader_prompt
from insight_cli.extract_policy.symbolic import SymbolicPolicy


def sample(states: np.ndarray, count: int, seed: int) -> np.ndarray:
    """At most `count` of the (N, V) states, drawn at random, in their order."""
    rows = np.random.default_rng(seed).choice(len(states), size=min(count, len(states)), replace=False)
    return states[np.sort(rows)]


def score(predicted: list[str | None], chosen: list[str], actions: list[str]) -> dict:
    """The reader's accuracy against the equations' `chosen` actions, next to chance and the
    share of the most frequent action (what a reader that always answers it scores)."""
    majority, count = Counter(chosen).most_common(1)[0] if chosen else (None, 0)
    return {
        "states": len(chosen),
        "accuracy": float(np.mean([p == c for p, c in zip(predicted, chosen)])) if chosen else 0.0,
        "chance": 1 / len(actions),
        "majority": count / len(chosen) if chosen else 0.0,
        "majority_action": majority,
    }


def simulate(reader, policy: SymbolicPolicy, explanation: str, states: np.ndarray) -> tuple[list[dict], dict]:
    """Ask `reader` (a backend's predict) for the action in each (N, V) state, one fresh prompt
    each: a record per state (its values, the equations' action, the prediction, the answer) and
    the score."""
    schema = structured.reader_schema(policy.actions)
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    records = []
    for inputs, choice in zip(states, policy.choose(states)):
        answer = reader.predict(READER_SYSTEM, reader_prompt(policy, explanation, inputs), schema).text
        records.append(
            {
                "values": {v.name: round(float(inputs[index[v.name]]), 3) for v in policy.used_variables},
                "equations": policy.actions[choice],
                "predicted": structured.named_action(answer, policy.actions),
                "answer": answer,
            }
        )
    return records, score([r["predicted"] for r in records], [r["equations"] for r in records], policy.actions)
