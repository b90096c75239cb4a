"""Check what an explanation claims against the equations.

A claim is a clause that names a variable (x_ball_4, or an ego state value such as ego_speed)
and a direction of influence ("raises", "lowers", "more likely", ...) on an action (named in the
clause, or the action its section is about). Policy claims are checked against the sign of
d logit / d variable (continuous actions: d mean / d variable) over reference states; decision
claims against the sign of SymbolicPolicy.sensitivities in that state. A variable the logit does not contain, or one that does not exist, is unsupported.
Clauses with a negation or with both directions are skipped rather than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from insight_cli.extract_policy.symbolic import SymbolicPolicy

VARIABLE = re.compile(r"\b(?:[xy]_[a-z0-9_]+?_[1-4]|ego_[a-z_]+|nav[12]_[a-z]+)\b")
UP = re.compile(r"\b(raises?|raising|increases?|increasing|boosts?|favou?rs?|pushes up|more likely|positive|higher logit)\b")
DOWN = re.compile(r"\b(lowers?|lowering|decreases?|decreasing|reduces?|reducing|suppress(es)?|less likely|negative|lower logit)\b")
# "a higher x_ball_4" describes the variable, not its influence
MODIFIER = re.compile(r"\b(higher|larger|greater|bigger|smaller|lower|increasing|decreasing)\s+(value of\s+)?`?(?=[xy]_|ego_|nav)")
NEGATION = re.compile(r"\b(not|no|never|neither|nor)\b|n't\b")
CLAUSES = re.compile(r"[.:](?=\s|$)|[;\n]|,\s*(?:while|whereas|but)\b|\bwhile\b|\bwhereas\b|\bbut\b")  # not "0.58"


@dataclass
class Claim:
    text: str
    variable: str
    action: str
    direction: str  # "raises" | "lowers"
    verdict: str  # "supported" | "contradicted" | "unsupported"
    reason: str


def _without_asides(text: str) -> str:
    """The text without its parentheses (a variable's meaning may name an action: "steering angle")."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def _claims(text: str, actions: list[str], default_action: str | None) -> list[tuple[str, str, str, str]]:
    """(clause, variable, action, direction) for every checkable clause. A clause that names no
    action is about the last one named before it ("x raises RIGHT, while y lowers it")."""
    found, current = [], default_action
    for clause in CLAUSES.split(text):
        clause = clause.strip()
        named = [a for a in actions if re.search(rf"\b{re.escape(a)}\b", _without_asides(clause))]
        targets = named or ([current] if current else [])
        current = named[-1] if named else current
        plain = MODIFIER.sub("", clause.lower().replace("`", ""))
        variables = VARIABLE.findall(clause.replace("`", ""))
        if not variables or NEGATION.search(plain):
            continue
        up, down = bool(UP.search(plain)), bool(DOWN.search(plain))
        if up == down:
            continue
        for variable in dict.fromkeys(variables):
            for action in targets:
                found.append((clause, variable, action, "raises" if up else "lowers"))
    return found


def _verdict(slopes: np.ndarray | None, direction: str, what: str) -> tuple[str, str]:
    """slopes: the derivative(s) of `what` with respect to the variable; None: no such variable."""
    if slopes is None:
        return "unsupported", "there is no such variable"
    if np.all(slopes == 0):
        return "unsupported", f"{what} does not depend on it"
    typical = float(np.median(slopes))
    sign = "raises" if typical > 0 else "lowers"
    if typical == 0:
        return "unsupported", f"{what} mostly does not change with it"
    if sign == direction:
        return "supported", f"d {what} = {typical:+.3g} (median)"
    return "contradicted", f"it {sign} {what}: d = {typical:+.3g} (median)"


def check_policy_text(text: str, policy: SymbolicPolicy, reference: np.ndarray, default_action: str | None) -> list[Claim]:
    """Claims about how variables move the actions, against d logit / d variable (d mean / d
    variable) over the reference states (N, V)."""
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    gradients = policy.logit_gradients(reference)  # (N, A, V)
    kind = policy.output
    claims = []
    for clause, variable, action, direction in _claims(text, policy.actions, default_action):
        a = policy.actions.index(action)
        slopes = gradients[:, a, index[variable]] if variable in index else None
        verdict, reason = _verdict(slopes, direction, f"{kind}_{action}")
        claims.append(Claim(clause, variable, action, direction, verdict, reason))
    return claims


def check_decision_text(text: str, policy: SymbolicPolicy, sensitivities: np.ndarray, default_action: str | None) -> list[Claim]:
    """Claims about one state, against `sensitivities` (A, V) there: d log p(action) / d variable,
    or d action / d variable for continuous actions."""
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    claims = []
    for clause, variable, named, direction in _claims(text, policy.actions, default_action):
        a = policy.actions.index(named)
        slopes = sensitivities[a, index[variable]: index[variable] + 1] if variable in index else None
        verdict, reason = _verdict(slopes, direction, named if policy.continuous else f"log p({named})")
        claims.append(Claim(clause, variable, named, direction, verdict, reason))
    return claims


def summarise(claims: list[Claim]) -> dict:
    counts = {verdict: sum(c.verdict == verdict for c in claims) for verdict in ("supported", "contradicted", "unsupported")}
    return {"claims": len(claims), **counts, "problems": [asdict(c) for c in claims if c.verdict != "supported"]}
