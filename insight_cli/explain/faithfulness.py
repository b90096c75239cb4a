"""Check what an explanation claims against the equations.

A claim says that a variable (x_ball_4, or an ego state value such as ego_speed) raises or lowers
an action. Claims come from an answer's claims block (see `structured`) and, as a second
opinion, from its prose: a clause that names a variable and a direction ("raises", "lowers",
"more likely", a signed slope such as "x_ball_4: +50.7"), about an action named in the clause
or the one its section is about; a list under a header such as "The variables that raise the
logit of RIGHT are:" gives every item the header's direction. Clauses whose direction is negated
("does not raise") or that state both directions are skipped rather than guessed at.

Policy claims are checked against the sign of d logit / d variable (continuous actions: d mean /
d variable) over reference states; decision claims against SymbolicPolicy.sensitivities in that
state, and a decision's most influential variable also by a counterfactual: the state with that
variable moved a small step. A variable the logit does not contain, or one that does not exist,
is unsupported.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from insight_cli.extract_policy.symbolic import COORDINATE_NAME, SymbolicPolicy
from insight_cli.games import STATE_VALUES

DIRECTIONS = ("raises", "lowers")
# a coordinate (named as variables_for names them) or an ego state value of a catalogue game
NAMES = "|".join([COORDINATE_NAME, *sorted(map(re.escape, STATE_VALUES), key=len, reverse=True)])
VARIABLE = re.compile(rf"\b(?:{NAMES})\b")
UP_WORDS = r"raises?|raising|increases?|increasing|boosts?|favou?rs?|pushes up|more likely|positive|higher logit"
DOWN_WORDS = (
    r"lowers?|lowering|decreases?|decreasing|reduces?|reducing|suppress(?:es)?|less likely|negative|lower logit"
)
UP, DOWN = re.compile(rf"\b(?:{UP_WORDS})\b"), re.compile(rf"\b(?:{DOWN_WORDS})\b")
# "a higher x_ball_4", "an increase in x_ball_4" describe the variable, not its influence
MODIFIER = re.compile(
    r"\b(?:(?:higher|larger|greater|bigger|smaller|lower|increasing|decreasing)\s+(?:value of\s+)?"
    r"|an?\s+(?:increase|decrease|rise|drop)\s+in\s+)"
    rf"(?=(?:{NAMES})\b)"
)
# A negation within three words before a direction: "does not raise", "never makes RIGHT more likely".
NEGATED = re.compile(
    rf"(?:\b(?:not|never|neither|nor|no|cannot|without)\b|n't\b)(?:\W+\w+){{0,3}}?\W+(?:{UP_WORDS}|{DOWN_WORDS})\b"
)
# An action after "not" or "than" is what the clause is not about: "raises RIGHT, not LEFT".
EXCLUDED_ACTION = re.compile(r"(?:\bnot|\bnor|\bthan|\binstead of|\brather than)\s+(?:the\s+)?(?:logit\s+of\s+)?$")
# A signed number right after a variable is its slope: "x_ball_4: +50.7", "x_ball_4 (slope -3.2)".
# Values are never signed (coordinates and ego state values are in [0, 1]), and a comparison such as
# "x_ball_4 < -0.03" is not a slope: only these words may come between.
SIGNED = re.compile(
    r"\s*(?:[:(]\s*|\b(?:slope|gradient|coefficient|weight|derivative|typical|median|mean|with|has|an?|"
    r"of)\b\s*)*([+\-\u2212])\s*(\d*\.?\d+)"
)
# Not inside "0.58", nor the colon of "x_ball_4: +50.7".
CLAUSES = re.compile(
    r"\.(?=\s|$)|:(?=\s|$)(?!\s*[+\-\u2212]?\d)|;|,\s*(?:while|whereas|but)\b|\bwhile\b|\bwhereas\b|\bbut\b"
)
BULLET = re.compile(r"^\s*(?:[-*\u2022+]|\d+[.)])\s+")
LIST_FILLER = re.compile(
    r"\s[\u2014\u2013-]\s.*$|\band\b|\bor\b|[,&*`\s]"
)  # what a bare list of variables holds besides them


@dataclass(frozen=True)
class Statement:
    """What an explanation says: `variable` raises or lowers `action`."""

    text: str  # the clause, or the claims block's entry
    variable: str
    action: str
    direction: str  # "raises" | "lowers"
    source: str = "text"  # "text": read from the prose; "json": from the claims block
    state: int | None = None  # structured decision claims: the decision they are about


@dataclass
class Claim:
    text: str
    variable: str
    action: str
    direction: str
    source: str
    verdict: str  # "supported" | "contradicted" | "unsupported"
    reason: str


def _without_asides(text: str) -> str:
    """The text without its parentheses (a variable's meaning may name an action: "steering angle")."""
    while True:
        shorter = re.sub(r"\([^()]*\)", "", text)
        if shorter == text:
            return text
        text = shorter


def _clauses(line: str) -> list[tuple[str, bool]]:
    """The clauses of one line, each with whether a colon ends it (a header of what follows)."""
    pieces, start = [], 0
    for match in CLAUSES.finditer(line):
        pieces.append((line[start : match.start()].strip(), match.group() == ":"))
        start = match.end()
    pieces.append((line[start:].strip(), False))
    return [(clause, colon) for clause, colon in pieces if clause]


def _actions_named(clause: str, actions: list[str]) -> list[str]:
    """The actions a clause is about, in the order it names them (not inside asides, not after "not")."""
    text, found = _without_asides(clause), {}
    for action in actions:
        for match in re.finditer(rf"\b{re.escape(action)}\b", text):
            if not EXCLUDED_ACTION.search(text[: match.start()]):
                found.setdefault(action, match.start())
    return sorted(found, key=found.get)


def _word_direction(plain: str) -> str | None:
    """ "raises", "lowers", None (no direction word), or "unclear" (both, or negated)."""
    if NEGATED.search(plain):
        return "unclear"
    up, down = bool(UP.search(plain)), bool(DOWN.search(plain))
    if up and down:
        return "unclear"
    return "raises" if up else "lowers" if down else None


def _signed_directions(clause: str) -> dict[str, str]:
    """variable -> the direction of the signed, nonzero number right after it."""
    found = {}
    for match in VARIABLE.finditer(clause):
        number = SIGNED.match(clause, match.end())
        if number and float(number.group(2)) != 0:
            found.setdefault(match.group(), "raises" if number.group(1) == "+" else "lowers")
    return found


def read_text(text: str, actions: list[str], default_action: str | None) -> list[Statement]:
    """Every checkable claim of the prose. A clause that names no action is about the last one
    named before it ("x raises RIGHT, while y lowers it"), else about `default_action`."""
    found, current, listing = [], default_action, None  # listing: (direction, actions) of an open list
    for line in text.replace("`", "").replace("**", "").splitlines():
        bullet = BULLET.match(line)
        if not bullet and line.strip():
            listing = None  # a list ends at the first line that is not one of its items
        for clause, colon in _clauses(line[bullet.end() :] if bullet else line):
            named = _actions_named(clause, actions)
            targets = named or ([current] if current else [])
            current = named[-1] if named else current
            plain = MODIFIER.sub("", clause.lower())
            word, variables = _word_direction(plain), list(dict.fromkeys(VARIABLE.findall(clause)))
            if not variables:
                if colon and word is not None:  # "The variables that raise their logits are:"
                    listing = (word, targets) if word in DIRECTIONS else None
                continue
            if word == "unclear":
                continue
            signed = _signed_directions(clause)
            bare = not LIST_FILLER.sub("", VARIABLE.sub("", _without_asides(clause)))
            if word is None and bare and listing:
                word, targets = listing[0], named or listing[1]
            for variable in variables:
                direction = signed.get(variable, word)
                if direction is None or (word is not None and direction != word):
                    continue
                found += [Statement(clause, variable, action, direction) for action in targets]
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


def _claim(statement: Statement, verdict: tuple[str, str]) -> Claim:
    s = statement
    return Claim(s.text, s.variable, s.action, s.direction, s.source, *verdict)


def check_policy(statements: list[Statement], policy: SymbolicPolicy, reference: np.ndarray) -> list[Claim]:
    """Claims about how variables move the actions, against d logit / d variable (d mean / d
    variable) over the reference states (N, V)."""
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    gradients = policy.logit_gradients(reference)  # (N, A, V)
    claims = []
    for s in statements:
        slopes = gradients[:, policy.actions.index(s.action), index[s.variable]] if s.variable in index else None
        claims.append(_claim(s, _verdict(slopes, s.direction, f"{policy.output}_{s.action}")))
    return claims


def check_decision(
    statements: list[Statement], policy: SymbolicPolicy, sensitivities: np.ndarray, number: int
) -> list[Claim]:
    """Claims about decision `number`, against `sensitivities` (A, V) there: d log p(action) /
    d variable, or d action / d variable for continuous actions."""
    index = {variable.name: i for i, variable in enumerate(policy.variables)}
    claims = []
    for s in statements:
        if s.state is not None and s.state != number:
            claims.append(_claim(s, ("unsupported", f"it is about state {s.state}, not decision {number}")))
            continue
        a = policy.actions.index(s.action)
        slopes = sensitivities[a, index[s.variable] : index[s.variable] + 1] if s.variable in index else None
        claims.append(_claim(s, _verdict(slopes, s.direction, s.action if policy.continuous else f"log p({s.action})")))
    return claims


def check_policy_text(
    text: str, policy: SymbolicPolicy, reference: np.ndarray, default_action: str | None
) -> list[Claim]:
    return check_policy(read_text(text, policy.actions, default_action), policy, reference)


def check_decision_text(
    text: str, policy: SymbolicPolicy, sensitivities: np.ndarray, default_action: str | None, number: int = 1
) -> list[Claim]:
    return check_decision(read_text(text, policy.actions, default_action), policy, sensitivities, number)


def disagreements(structured: list[Statement], prose: list[Statement]) -> list[dict]:
    """Where the prose states a direction that the claims block does not give for that variable
    and action: the other direction, or none."""
    stated = defaultdict(set)
    for s in structured:
        stated[s.variable, s.action].add(s.direction)
    found = {}
    for s in prose:
        if s.direction not in stated[s.variable, s.action]:
            found.setdefault(
                (s.variable, s.action, s.direction),
                {
                    "variable": s.variable,
                    "action": s.action,
                    "prose": s.direction,
                    "claims_block": sorted(stated[s.variable, s.action]) or None,
                    "text": s.text,
                },
            )
    return list(found.values())


COUNTERFACTUAL_STEP = 0.05  # a twentieth of the screen (every variable is in [0, 1]): small, yet past rounding


def outcome(policy: SymbolicPolicy, inputs: np.ndarray, action: int) -> float:
    """p(action) in the (V,) state, or the continuous action's value tanh(mean)."""
    if policy.continuous:
        return float(policy.choose(inputs[None])[0, action])
    return float(policy.probabilities(inputs[None])[0, action])


def log_outcome(policy: SymbolicPolicy, inputs: np.ndarray, action: int) -> float:
    """log p(action), computed so that it still moves where p rounds to 1 (a confident policy);
    continuous: the action's value, as `outcome`."""
    if policy.continuous:
        return outcome(policy, inputs, action)
    logits = policy.logits(inputs[None])[0].astype(np.float64)
    others = np.delete(logits, action) - logits[action]
    if others.max(initial=-np.inf) <= 0:  # the most likely action: log p = -log(1 + sum exp(others))
        return float(-np.log1p(np.exp(others).sum()))
    top = logits.max()
    return float(logits[action] - top - np.log(np.exp(logits - top).sum()))


def counterfactual(
    policy: SymbolicPolicy,
    inputs: np.ndarray,
    variable: str,
    action: str,
    direction: str,
    step: float = COUNTERFACTUAL_STEP,
) -> dict:
    """Test "`variable` raises (lowers) `action` here" by intervention rather than by the gradient
    it was read from: move the variable up by `step` in the (V,) state and see which way p(action)
    (continuous: the action's value) moves, and by how much. Also which variable the equations
    use moves it most over [-step, +step]: both ways, since a probability near 1 barely rises
    whatever moves it."""
    index = {v.name: i for i, v in enumerate(policy.variables)}
    a = policy.actions.index(action)

    def at(v: int, by: float) -> float:
        moved = inputs.copy()
        moved[v] += by
        return outcome(policy, moved, a)

    before, after = outcome(policy, inputs, a), at(index[variable], step)
    moved = inputs.copy()
    moved[index[variable]] += step
    log_change = log_outcome(policy, moved, a) - log_outcome(policy, inputs, a)  # the sign, even at p = 1
    compared = list(dict.fromkeys([*(v.name for v in policy.used_variables), variable]))
    spans = {name: at(index[name], step) - at(index[name], -step) for name in compared}
    largest = max(compared, key=lambda name: abs(spans[name]))
    if log_change == 0:
        verdict = "no change"
    else:
        verdict = "confirmed" if ("raises" if log_change > 0 else "lowers") == direction else "refuted"
    return {
        "variable": variable,
        "action": action,
        "direction": direction,
        "step": step,
        "before": before,
        "after": after,
        "change": after - before,
        "verdict": verdict,
        "span": spans[variable],
        "largest": largest,
        "largest_span": spans[largest],
    }


def summarise(claims: list[dict], disagreeing: int = 0, counterfactuals: list[dict] = ()) -> dict:
    """Counts over checked claims (as dicts), the prose's disagreements with the claims blocks, and
    the counterfactual tests that ran (those with a verdict)."""
    counts = {
        verdict: sum(c["verdict"] == verdict for c in claims)
        for verdict in ("supported", "contradicted", "unsupported")
    }
    tested = [c for c in counterfactuals if "verdict" in c]
    return {
        "claims": len(claims),
        **counts,
        "problems": [c for c in claims if c["verdict"] != "supported"],
        "disagreements": disagreeing,
        "counterfactuals": {"checked": len(tested), "confirmed": sum(c["verdict"] == "confirmed" for c in tested)},
    }
