"""Claims in machine-readable form, next to an answer's prose.

An answer ends with a fenced ```json block, {"claims": [{"variable", "action", "direction"}]}
(decisions: each claim also names its "state", the decision number, and the block its
"most_influential" variable). Where the server enforces the JSON schema of `schema` (the OpenAI
API's response_format), the whole answer is that object and the prose is its "answer". Either
way `parse` reads it back; what does not read is reported, never guessed at.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from insight_cli.explain.faithfulness import DIRECTIONS, Statement

FENCE = re.compile(
    r"```(?:json)?[ \t]*\n?([{\[].*?)(?:```|\Z)", re.S
)  # an unclosed block (a cut-off answer) runs to the end
FLAT_OBJECT = re.compile(r"\{[^{}]*\}")  # one claim: claims hold no nested objects
MOST_INFLUENTIAL = re.compile(r'"most_influential"\s*:\s*"([^"]*)"')
ANSWER = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)"', re.S)
SYNONYMS = {
    "raises": "raises",
    "raise": "raises",
    "increases": "raises",
    "increase": "raises",
    "up": "raises",
    "positive": "raises",
    "+": "raises",
    "lowers": "lowers",
    "lower": "lowers",
    "decreases": "lowers",
    "decrease": "lowers",
    "down": "lowers",
    "negative": "lowers",
    "-": "lowers",
}


@dataclass
class Structured:
    """What an answer's claims block says, and how well it read."""

    prose: str  # the answer without its block
    statements: list[Statement] = field(default_factory=list)
    most_influential: str | None = None
    status: str = "missing"  # "complete" | "partial" (cut off, or some entries unread) | "malformed" | "missing"
    problems: list[str] = field(default_factory=list)  # why entries did not read

    @property
    def read(self) -> bool:
        """Whether the block gave claims to check (an empty list is a claim too: "none")."""
        return self.status in ("complete", "partial")

    def summary(self) -> dict:
        return {
            "status": self.status,
            "claims": len(self.statements),
            "most_influential": self.most_influential,
            "problems": self.problems,
        }


def schema(actions: list[str], decision: bool) -> dict:
    """The response_format json_schema of an answer: the prose and its claims."""
    claim = {
        "variable": {"type": "string"},
        "action": {"type": "string", "enum": list(actions)},
        "direction": {"type": "string", "enum": list(DIRECTIONS)},
    }
    if decision:
        claim["state"] = {"type": "integer"}
    properties = {
        "answer": {"type": "string"},
        "claims": {
            "type": "array",
            "items": {"type": "object", "properties": claim, "required": list(claim), "additionalProperties": False},
        },
    }
    if decision:
        properties["most_influential"] = {"type": "string"}
    return {
        "name": "decision_explanation" if decision else "policy_explanation",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        },
    }


def reader_schema(actions: list[str]) -> dict:
    """The response_format json_schema of a simulatability reader's answer: one action."""
    return {
        "name": "predicted_action",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"action": {"type": "string", "enum": list(actions)}},
            "required": ["action"],
            "additionalProperties": False,
        },
    }


def render(prose: str, statements: list[Statement], most_influential: str | None = None) -> str:
    """An answer as the prompts ask for it: the prose, then its claims block."""
    claims = [
        {
            "variable": s.variable,
            "action": s.action,
            "direction": s.direction,
            **({} if s.state is None else {"state": s.state}),
        }
        for s in statements
    ]
    block = {"claims": claims, **({} if most_influential is None else {"most_influential": most_influential})}
    return f"{prose}\n\n```json\n{json.dumps(block)}\n```"


def _entry(entry, actions: list[str], default_action: str | None) -> Statement | str:
    """One claim of the block, or why it does not read."""
    if not isinstance(entry, dict):
        return f"not an object: {json.dumps(entry)[:60]}"
    shown = json.dumps(entry)
    variable, action = entry.get("variable"), entry.get("action", default_action)
    direction = SYNONYMS.get(str(entry.get("direction", "")).strip().lower())
    canonical = {a.lower(): a for a in actions}.get(str(action).strip().lower())
    state = entry.get("state")
    if not isinstance(variable, str) or not variable.strip():
        return f"no variable: {shown}"
    if canonical is None:
        return f"no action of this game: {shown}"
    if direction is None:
        return f"direction is not raises or lowers: {shown}"
    if state is not None and not (isinstance(state, int) or str(state).strip().isdigit()):
        return f"state is not a decision number: {shown}"
    return Statement(
        shown, variable.strip().strip("`"), canonical, direction, "json", None if state is None else int(state)
    )


def _claims(entries, actions: list[str], default_action: str | None, found: Structured) -> None:
    for entry in entries:
        read = _entry(entry, actions, default_action)
        if isinstance(read, str):
            found.problems.append(read)
        else:
            found.statements.append(read)


def _salvage(block: str, actions: list[str], default_action: str | None, found: Structured) -> Structured:
    """A block that is no valid JSON (cut off at --max-tokens, say): the whole claim objects in it."""
    entries = []
    for text in FLAT_OBJECT.findall(block):
        try:
            entries.append(json.loads(text))
        except ValueError:
            found.problems.append(f"not JSON: {text[:60]}")
    _claims(entries, actions, default_action, found)
    influential = MOST_INFLUENTIAL.search(block)
    found.most_influential = influential.group(1) if influential else None
    found.status = "partial" if found.statements else "malformed"
    found.problems.insert(0, "the claims block is not valid JSON" + (" (cut off?)" if found.statements else ""))
    return found


def parse(text: str, actions: list[str], default_action: str | None = None) -> Structured:
    """The prose and claims of an answer: a JSON object with "answer" (a server that enforces the
    schema), or prose and a fenced ```json block (the last one), or prose alone."""
    text = text.strip()
    if text.startswith("{"):
        block, prose = text, ""
        answer = ANSWER.search(text)
        if answer:
            try:
                prose = json.loads(f'"{answer.group(1)}"')
            except ValueError:
                prose = answer.group(1)
    else:
        fences = list(FENCE.finditer(text))
        bare = text.rfind('{"claims"')  # a block written without its fence
        if fences:
            last = fences[-1]
            block, prose = last.group(1), (text[: last.start()] + text[last.end() :]).strip()
        elif bare >= 0:
            block, prose = text[bare:], text[:bare].strip()
        else:
            return Structured(prose=text)
    found = Structured(prose=prose)
    try:
        data = json.loads(block)
    except ValueError:
        return _salvage(block, actions, default_action, found)
    entries = data if isinstance(data, list) else data.get("claims") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        found.status, found.problems = "malformed", ['the claims block has no "claims" list']
        return found
    data = data if isinstance(data, dict) else {}
    if isinstance(data.get("answer"), str):
        found.prose = data["answer"].strip()
    _claims(entries, actions, default_action, found)
    influential = data.get("most_influential")
    found.most_influential = (
        influential.strip().strip("`") if isinstance(influential, str) and influential.strip() else None
    )
    found.status = "partial" if found.problems else "complete"
    return found


def prose(text: str) -> str:
    """An answer without its claims block: what a person reads, and what a dialogue keeps."""
    return parse(text, []).prose


def named_action(text: str, actions: list[str]) -> str | None:
    """The action a reader answered: {"action": ...}, else the first action name in its words."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("action"), str):
        text = data["action"]
    canonical = {a.lower(): a for a in actions}
    found = re.finditer(r"\b(" + "|".join(map(re.escape, sorted(actions, key=len, reverse=True))) + r")\b", text, re.I)
    first = next(found, None) if actions else None
    return canonical[first.group(1).lower()] if first else None
