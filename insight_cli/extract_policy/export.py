"""The extracted policy's files: policy.json (machine-readable), policy.md (Markdown with LaTeX),
policy.tex (a standalone LaTeX document) and policy.py (a numpy-only `act(coordinates)`, or
`act(coordinates, state)` for a policy that reads an ego state). Each says whether its
equations are the pruned EQL network or a refit to the network's decisions.

insight itself only ever reads policy.json, which is data: policy.py is for users and is never
imported. It is still written so that no path or name can put code into it: every string in it
is escaped, every variable checked to be a plain ASCII identifier.
"""

from __future__ import annotations

import json
import keyword
import math
from contextlib import ExitStack
from pathlib import Path

import sympy

from insight_cli import __version__
from insight_cli.errors import InsightError
from insight_cli.extract_policy.symbolic import (
    METHODS,
    READABLE_TERMS,
    Interface,
    SymbolicPolicy,
    variables_for,
)
from insight_cli.files import atomic_output
from insight_cli.perception import COORDINATE_CONVENTION

FORMAT = "insight-policy"
FORMAT_VERSION = 1
NAMES = ("policy.json", "policy.md", "policy.tex", "policy.py")
SOFTMAX = "softmax over the action logits: p(a) = exp(logit_a) / sum_b exp(logit_b); the agent takes the largest"
SQUASHED = (
    "each action is tanh(mean) of its polynomial, a number in [-1, 1] (the mean of a squashed Gaussian "
    "the agent was trained with)"
)
# The names policy.py's functions use for themselves: a variable may not take one.
MODULE_NAMES = frozenset({"np", "c", "s", "single", "values", "out", "chosen", "coordinates", "state"})


def policy_document(
    policy: SymbolicPolicy, game: str, action_meanings: dict[str, str], object_names: list[str], report: dict
) -> dict:
    """Everything policy.json holds; `report` adds fidelity, returns and where it came from."""
    used = set(variable.name for variable in policy.used_variables)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "insight_version": __version__,
        "game": game,
        "objects": object_names,
        "coordinate_convention": COORDINATE_CONVENTION,
        "continuous": policy.continuous,
        "state": policy.state_names,
        "probabilities": SQUASHED if policy.continuous else SOFTMAX,
        "method": policy.method,
        "threshold": policy.threshold,
        "digits": policy.digits,
        "readable": max(policy.term_counts) <= READABLE_TERMS,
        "actions": [
            {
                "index": index,
                "name": name,
                "meaning": action_meanings.get(name, ""),
                "expression": str(expression),
                "latex": policy.latex(expression),
                "terms": [
                    {
                        "coefficient": coefficient,
                        "powers": {policy.variables[i].name: int(e) for i, e in enumerate(monomial) if e},
                    }
                    for monomial, coefficient in terms.items()
                ],
            }
            for index, (name, expression, terms) in enumerate(zip(policy.actions, policy.expressions, policy.terms))
        ],
        "variables": [
            {
                "name": v.name,
                "object": v.object,
                "slot": v.slot,
                "frame": v.frame,
                "axis": v.axis,
                "meaning": v.meaning,
                "used": v.name in used,
            }
            for v in policy.variables
        ],
        **report,
    }


def read_policy(path: Path) -> tuple[SymbolicPolicy, dict]:
    """policy.json -> the policy it describes, and the whole document; anything else is a
    one-line error."""
    path = Path(path)
    if path.suffix == ".py":
        raise InsightError(
            f"{path} is Python, which insight never runs: it reads the equations from policy.json",
            hint="pass the policy.json next to it",
        )
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InsightError(f"{path} does not exist", hint="run `insight extract-policy` on the run first") from None
    except (OSError, ValueError) as error:
        raise InsightError(f"{path} is not a readable policy file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InsightError(f"{path} is not an insight policy file")
    try:
        return _policy(document), document
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InsightError(
            f"{path} is a damaged policy file ({type(error).__name__}: {error})",
            hint="extract it again with `insight extract-policy`",
        ) from None


def _policy(document: dict) -> SymbolicPolicy:
    """The policy a policy.json document describes: its variables must follow from its objects
    and state, and every term be a finite coefficient times powers of those variables."""
    state = {v["name"]: v["meaning"] for v in document["variables"] if v["slot"] is None}
    variables = variables_for(document["objects"], state)
    if [v["name"] for v in document["variables"]] != [v.name for v in variables]:
        raise ValueError("its variables do not follow from its objects and ego state")
    index = {variable.name: i for i, variable in enumerate(variables)}
    terms = []
    for action in document["actions"]:
        logit = {}
        for term in action["terms"]:
            monomial = [0] * len(variables)
            for name, power in term["powers"].items():
                if type(power) is not int or power < 1:
                    raise ValueError(f"power {power!r} of {name} is not a positive whole number")
                monomial[index[name]] = power
            coefficient = float(term["coefficient"])
            if not math.isfinite(coefficient):
                raise ValueError(f"coefficient {coefficient} is not finite")
            logit[tuple(monomial)] = coefficient
        terms.append(logit)
    method = document.get("method", "pruned")  # files from before refits were all pruned networks
    if method not in METHODS:
        raise ValueError(f"method {method!r} is none of {', '.join(METHODS)}")
    return SymbolicPolicy(
        variables,
        [str(a["name"]) for a in document["actions"]],
        terms,
        float(document["threshold"]),
        int(document["digits"]),
        bool(document.get("continuous", False)),
        method,
    )


def read_policy_for(path: Path, game: str, actor: Interface) -> SymbolicPolicy:
    """policy.json, if it was extracted for this game and a run whose EQL actor reads the same
    variables (objects, in order, and ego state) and drives the same actions."""
    policy, document = read_policy(path)
    if (
        document.get("game") != game
        or policy.actions != list(actor.actions)
        or policy.continuous != actor.continuous
        or [(v.name, v.object) for v in policy.variables] != [(v.name, v.object) for v in actor.variables]
    ):
        raise InsightError(
            f"{path} was extracted for another game, object set, ego state or actions than this run",
            hint="extract this run's with `insight extract-policy RUN.ckpt`, or pass its policy.json",
        )
    return policy


def provenance(document: dict) -> str:
    """Where the equations come from, in a few words."""
    if document.get("method") == "refit":
        return (
            f"equations refitted to the EQL actor's decisions, {document['digits']} significant digits; "
            "not the network's own terms"
        )
    return (
        f"the EQL network with weights below {document['threshold']:g} pruned, {document['digits']} significant digits"
    )


def markdown(document: dict) -> str:
    lines = [
        f"# {document['game']} policy",
        "",
        f"Extracted by insight {document['insight_version']} from `{document['run']}`: {provenance(document)}.",
        "",
        document["coordinate_convention"]
        + " Coordinates are named `<axis>_<object>_<frame>`"
        + (", ego state values as listed below. " if document["state"] else ". ")
        + (
            "Each polynomial is the mean of one action: the action is tanh(mean), in [-1, 1]."
            if document["continuous"]
            else "The agent takes the action whose logit is largest; probabilities are the softmax of the logits."
        ),
        "",
    ]
    for action in document["actions"]:
        meaning = f" ({action['meaning']})" if action["meaning"] else ""
        lines += [
            f"## {action['name']}{meaning}: {len(action['terms'])} terms",
            "",
            "$$",
            action["latex"] or "0",
            "$$",
            "",
        ]
    lines += ["## Variables", "", "| variable | meaning |", "| --- | --- |"]
    lines += [f"| `{v['name']}` | {v['meaning']} |" for v in document["variables"] if v["used"]]
    if document.get("left_out"):
        lines += ["", "Left out: " + "; ".join(f"`{name}` ({why})" for name, why in document["left_out"].items()) + "."]
    lines += ["", "## Fidelity and return", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {key.replace('_', ' ')} | {_format(value)} |" for key, value in document["fidelity"].items()]
    lines += [f"| {key.replace('_', ' ')} return | {_format(value)} |" for key, value in document["returns"].items()]
    if document.get("tradeoff"):
        lines += [
            "",
            "## Length against fidelity",
            "",
            "Rollout fidelity is measured on the equations' own episodes "
            f"(cut at {document.get('max_steps')} steps), held-out fidelity on the dataset's test split.",
            "",
            "| equations | budget | terms | held-out | rollouts | return |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {entry['method']}{' (chosen)' if entry['chosen'] else ''} | "
            f"{entry['budget'] if entry['budget'] is not None else 'whole network'} | {entry['terms']} | "
            f"{_format(entry['held_out_fidelity'])} | {_format(entry['rollout_fidelity'])} | "
            f"{_format(entry['return'])} |"
            for entry in document["tradeoff"]
        ]
    if not document["readable"]:
        lines += [
            "",
            f"**Not readable:** an action has more than {READABLE_TERMS} terms; "
            "prune more (`--threshold`, `--max-terms`).",
        ]
    return "\n".join(lines) + "\n"


def _format(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def latex_document(document: dict) -> str:
    left = r"\mathrm{mean}" if document["continuous"] else r"\mathrm{logit}"

    def row(action: dict) -> str:
        name = action["name"].replace("_", r"\_")
        return rf"  {left}_{{\text{{{name}}}}} &= {action['latex'] or '0'}"

    rows = [row(action) for action in document["actions"]]
    return "\n".join(
        [
            r"\documentclass{article}",
            r"\usepackage{amsmath}",
            r"\begin{document}",
            rf"\section*{{{document['game']} policy}}",
            f"From {provenance(document)}. " + document["coordinate_convention"].replace("%", r"\%"),
            r"\begin{align*}",
            " \\\\\n".join(rows),
            r"\end{align*}",
            r"\end{document}",
            "",
        ]
    )


def python_module(document: dict, policy: SymbolicPolicy) -> str:
    """A dependency-free (numpy only) module with the equations written out."""
    _check_python_names(policy)
    used = policy.used_variables
    positions = {variable.name: index for index, variable in enumerate(policy.variables)}
    unpack = [f"    {v.name} = c[:, {positions[v.name]}]" for v in used]
    polynomials = []
    for name, expression in zip(policy.actions, policy.expressions):
        terms = sympy.Add.make_args(expression) if expression != 0 else ()
        if len(terms) <= READABLE_TERMS:
            polynomials.append(f"        {sympy.pycode(expression) if terms else '0.0'},  # {_one_line(name)}")
        else:  # one term a line: a single long sum is too deeply nested for Python's compiler
            polynomials += [
                f"        sum([  # {_one_line(name)}",
                *(f"            {sympy.pycode(term)}," for term in terms),
                "        ], 0.0),",
            ]
    objects = len(document["objects"])
    if document["state"]:
        shapes = (
            f"coordinates: object centres, (K, 4, 2) or (B, K, 4, 2) with K = {objects} objects in the order of\n"
            "OBJECTS, 4 stacked frames (oldest first) and (x, y); state: the ego state, (S,) or (B, S) in the\n"
            "order of STATE."
        )
        signature, joined = (
            "coordinates, state",
            [
                "    c = np.asarray(coordinates, dtype=np.float64)",
                "    single = c.ndim == 3",
                "    s = np.asarray(state, dtype=np.float64).reshape(-1, len(STATE))",
                "    c = np.concatenate([c.reshape(-1, len(VARIABLES) - len(STATE)), s], axis=1)",
            ],
        )
    else:
        shapes = (
            f"coordinates: object centres, (K, 4, 2) or (B, K, 4, 2) with K = {objects} objects in the order of\n"
            "OBJECTS, 4 stacked frames (oldest first) and (x, y)."
        )
        signature, joined = (
            "coordinates",
            [
                "    c = np.asarray(coordinates, dtype=np.float64)",
                "    single = c.ndim == 3",
                "    c = c.reshape(-1, len(VARIABLES))",
            ],
        )
    if policy.continuous:
        what, act = (
            "the action means",
            [
                f"def act({signature}):",
                '    """tanh of the means: an array (A,) of actions in [-1, 1] for one state, (B, A) for a batch."""',
                f"    return np.tanh(means({signature}))",
            ],
        )
    else:
        what, act = (
            "the action logits",
            [
                f"def act({signature}):",
                '    """The action with the largest logit: an int for one state, an array for a batch."""',
                f"    chosen = np.argmax(logits({signature}), axis=-1)",
                "    return int(chosen) if np.ndim(chosen) == 0 else chosen",
            ],
        )
    function = "means" if policy.continuous else "logits"
    about = "\n".join(
        [
            f"The {document['game']} policy extracted by insight {document['insight_version']} from",
            f"{document['run']}:",
            f"{provenance(document)}.",
            "",
            f"act({signature}) -> "
            + ("actions in [-1, 1], one per name in ACTIONS." if policy.continuous else "action index (into ACTIONS)."),
            shapes,
            document["coordinate_convention"],
        ]
    )
    return "\n".join(
        [
            _docstring(about),
            "",
            "import numpy as np",
            "",
            f"GAME = {ascii(document['game'])}",
            f"ACTIONS = {ascii(policy.actions)}",
            f"OBJECTS = {ascii(document['objects'])}",
            f"STATE = {ascii(document['state'])}",
            f"VARIABLES = {ascii([v.name for v in policy.variables])}",
            "",
            "",
            f"def {function}({signature}):",
            f'    """{what}: (A,) for one state, (B, A) for a batch."""',
            *joined,
            *unpack,
            "    values = [",
            *polynomials,
            "    ]",
            "    out = np.stack([np.broadcast_to(np.asarray(value, dtype=np.float64), (len(c),)) for value in values], "
            "axis=-1)",
            "    return out[0] if single else out",
            "",
            "",
            *act,
            "",
        ]
    )


def _check_python_names(policy: SymbolicPolicy) -> None:
    """Each variable becomes a local of policy.py: it must be an ASCII identifier (Python folds
    others, "ﬁsh" into "fish"), no keyword, none of the module's own names, and unique."""
    names = [variable.name for variable in policy.variables]
    for name in names:
        if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name) or name in MODULE_NAMES:
            raise InsightError(
                f"the variable {name!r} cannot be a name in policy.py",
                hint="re-create the dataset with ASCII object names: `insight segment --names names.toml`",
            )
    if len(set(names)) != len(names):
        raise InsightError("two variables of the policy have the same name", hint="give the objects distinct names")


def _one_line(text: str) -> str:
    """`text` with newlines, backslashes and anything not ASCII escaped: safe in a comment."""
    return text.encode("unicode_escape").decode("ascii")


def _docstring(text: str) -> str:
    """`text` as a triple-quoted string literal that reads as itself: with every backslash and
    quote escaped nothing in it can end the literal early or form an escape."""
    return '"""' + "\n".join(_one_line(line).replace('"', '\\"') for line in text.split("\n")) + '"""'


def write_exports(
    directory: Path, policy: SymbolicPolicy, document: dict, extra: dict[str, bytes] | None = None
) -> list[Path]:
    """The four files, and the `extra` ones (name -> contents), as one set: each is written to a
    temporary, and only when all are written are they renamed into place, policy.json last
    (what readers go by), so a failure such as a full disk leaves the earlier set whole."""
    directory = Path(directory)
    texts = (
        json.dumps(document, indent=2),
        markdown(document),
        latex_document(document),
        python_module(document, policy),
        *(extra or {}).values(),
    )
    paths = [directory / name for name in (*NAMES, *(extra or {}))]
    try:
        with ExitStack() as stack:  # leaving it renames in reverse order of entry: policy.json last
            streams = [stack.enter_context(atomic_output(path)) for path in paths]
            for stream, text in zip(streams, texts):
                # a path's undecodable bytes, as they were
                stream.write(text if isinstance(text, bytes) else text.encode(errors="surrogateescape"))
                stream.flush()  # so that closing, after the first rename, has nothing left to fail on
    except OSError as error:
        raise InsightError(f"cannot write the policy files in {directory}: {error.strerror or error}") from None
    return paths
