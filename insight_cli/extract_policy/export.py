"""The extracted policy's files: policy.json (machine-readable), policy.md (Markdown with LaTeX),
policy.tex (a standalone LaTeX document) and policy.py (a numpy-only `act(coordinates)`, or
`act(coordinates, state)` for a policy that reads an ego state)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import sympy

from insight_cli import __version__
from insight_cli.errors import InsightError
from insight_cli.extract_policy.symbolic import COORDINATE_CONVENTION, READABLE_TERMS, SymbolicPolicy, variables_for
from insight_cli.files import write_atomically

FORMAT = "insight-policy"
FORMAT_VERSION = 1
NAMES = ("policy.json", "policy.md", "policy.tex", "policy.py")
SOFTMAX = "softmax over the action logits: p(a) = exp(logit_a) / sum_b exp(logit_b); the agent takes the largest"
SQUASHED = ("each action is tanh(mean) of its polynomial, a number in [-1, 1] (the mean of a squashed Gaussian "
            "the agent was trained with)")


def policy_document(policy: SymbolicPolicy, game: str, action_meanings: dict[str, str], object_names: list[str],
                    report: dict) -> dict:
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
                    {"coefficient": coefficient,
                     "powers": {policy.variables[i].name: int(e) for i, e in enumerate(monomial) if e}}
                    for monomial, coefficient in terms.items()
                ],
            }
            for index, (name, expression, terms) in enumerate(zip(policy.actions, policy.expressions, policy.terms))
        ],
        "variables": [
            {"name": v.name, "object": v.object, "slot": v.slot, "frame": v.frame, "axis": v.axis,
             "meaning": v.meaning, "used": v.name in used}
            for v in policy.variables
        ],
        **report,
    }


def read_policy(path: Path) -> tuple[SymbolicPolicy, dict]:
    """policy.json -> the policy it describes, and the whole document."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InsightError(f"{path} does not exist", hint="run `insight extract-policy` on the run first") from None
    except (OSError, ValueError) as error:
        raise InsightError(f"{path} is not a readable policy file: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InsightError(f"{path} is not an insight policy file")
    state = {v["name"]: v["meaning"] for v in document["variables"] if v["slot"] is None}
    variables = variables_for(document["objects"], state)
    index = {variable.name: i for i, variable in enumerate(variables)}
    terms = []
    for action in document["actions"]:
        logit = {}
        for term in action["terms"]:
            monomial = [0] * len(variables)
            for name, power in term["powers"].items():
                monomial[index[name]] = power
            logit[tuple(monomial)] = float(term["coefficient"])
        terms.append(logit)
    policy = SymbolicPolicy(variables, [a["name"] for a in document["actions"]], terms, document["threshold"],
                            document["digits"], document.get("continuous", False))
    return policy, document


def markdown(document: dict) -> str:
    lines = [
        f"# {document['game']} policy",
        "",
        f"Extracted by insight {document['insight_version']} from `{document['run']}` "
        f"(weights below {document['threshold']:g} pruned, {document['digits']} significant digits).",
        "",
        document["coordinate_convention"] + " Coordinates are named `<axis>_<object>_<frame>`"
        + (", ego state values as listed below. " if document["state"] else ". ")
        + ("Each polynomial is the mean of one action: the action is tanh(mean), in [-1, 1]." if document["continuous"]
           else "The agent takes the action whose logit is largest; probabilities are the softmax of the logits."),
        "",
    ]
    for action in document["actions"]:
        meaning = f" ({action['meaning']})" if action["meaning"] else ""
        lines += [f"## {action['name']}{meaning}: {len(action['terms'])} terms", "", "$$", action["latex"] or "0", "$$", ""]
    lines += ["## Variables", "", "| variable | meaning |", "| --- | --- |"]
    lines += [f"| `{v['name']}` | {v['meaning']} |" for v in document["variables"] if v["used"]]
    lines += ["", "## Fidelity and return", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {key.replace('_', ' ')} | {_format(value)} |" for key, value in document["fidelity"].items()]
    lines += [f"| {key.replace('_', ' ')} return | {_format(value)} |" for key, value in document["returns"].items()]
    if not document["readable"]:
        lines += ["", f"**Not readable:** an action has more than {READABLE_TERMS} terms; "
                  "prune more (`--threshold`, `--max-terms`)."]
    return "\n".join(lines) + "\n"


def _format(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def latex_document(document: dict) -> str:
    left = r"\mathrm{mean}" if document["continuous"] else r"\mathrm{logit}"

    def row(action: dict) -> str:
        name = action["name"].replace("_", r"\_")
        return rf"  {left}_{{\text{{{name}}}}} &= {action['latex'] or '0'}"

    rows = [row(action) for action in document["actions"]]
    return "\n".join([
        r"\documentclass{article}",
        r"\usepackage{amsmath}",
        r"\begin{document}",
        rf"\section*{{{document['game']} policy}}",
        document["coordinate_convention"].replace("%", r"\%"),
        r"\begin{align*}",
        " \\\\\n".join(rows),
        r"\end{align*}",
        r"\end{document}",
        "",
    ])


def python_module(document: dict, policy: SymbolicPolicy) -> str:
    """A dependency-free (numpy only) module with the equations written out."""
    used = policy.used_variables
    positions = {variable.name: index for index, variable in enumerate(policy.variables)}
    unpack = [f"    {v.name} = c[:, {positions[v.name]}]" for v in used]
    polynomials = []
    for name, expression in zip(policy.actions, policy.expressions):
        terms = sympy.Add.make_args(expression) if expression != 0 else ()
        if len(terms) <= READABLE_TERMS:
            polynomials.append(f"        {sympy.pycode(expression) if terms else '0.0'},  # {name}")
        else:  # one term a line: a single long sum is too deeply nested for Python's compiler
            polynomials += [f"        sum([  # {name}", *(f"            {sympy.pycode(term)}," for term in terms), "        ], 0.0),"]
    objects = len(document["objects"])
    if document["state"]:
        shapes = (f"coordinates: object centres, (K, 4, 2) or (B, K, 4, 2) with K = {objects} objects in the order of\n"
                  "OBJECTS, 4 stacked frames (oldest first) and (x, y); state: the ego state, (S,) or (B, S) in the\n"
                  "order of STATE.")
        signature, joined = "coordinates, state", [
            "    c = np.asarray(coordinates, dtype=np.float64)",
            "    single = c.ndim == 3",
            "    s = np.asarray(state, dtype=np.float64).reshape(-1, len(STATE))",
            "    c = np.concatenate([c.reshape(-1, len(VARIABLES) - len(STATE)), s], axis=1)",
        ]
    else:
        shapes = (f"coordinates: object centres, (K, 4, 2) or (B, K, 4, 2) with K = {objects} objects in the order of\n"
                  "OBJECTS, 4 stacked frames (oldest first) and (x, y).")
        signature, joined = "coordinates", [
            "    c = np.asarray(coordinates, dtype=np.float64)",
            "    single = c.ndim == 3",
            "    c = c.reshape(-1, len(VARIABLES))",
        ]
    if policy.continuous:
        what, act = "the action means", [
            f"def act({signature}):",
            '    """tanh of the means: an array (A,) of actions in [-1, 1] for one state, (B, A) for a batch."""',
            f"    return np.tanh(means({signature}))",
        ]
    else:
        what, act = "the action logits", [
            f"def act({signature}):",
            '    """The action with the largest logit: an int for one state, an array for a batch."""',
            f"    chosen = np.argmax(logits({signature}), axis=-1)",
            "    return int(chosen) if np.ndim(chosen) == 0 else chosen",
        ]
    function = "means" if policy.continuous else "logits"
    return "\n".join([
        f'"""The {document["game"]} policy extracted by insight {document["insight_version"]} from',
        f'{document["run"]}.',
        "",
        f"act({signature}) -> " + ("actions in [-1, 1], one per name in ACTIONS." if policy.continuous
                                     else "action index (into ACTIONS)."),
        shapes,
        document["coordinate_convention"],
        '"""',
        "",
        "import numpy as np",
        "",
        f"GAME = {document['game']!r}",
        f"ACTIONS = {policy.actions!r}",
        f"OBJECTS = {document['objects']!r}",
        f"STATE = {document['state']!r}",
        f"VARIABLES = {[v.name for v in policy.variables]!r}",
        "",
        "",
        f"def {function}({signature}):",
        f'    """{what}: (A,) for one state, (B, A) for a batch."""',
        *joined,
        *unpack,
        "    values = [",
        *polynomials,
        "    ]",
        "    out = np.stack([np.broadcast_to(np.asarray(value, dtype=np.float64), (len(c),)) for value in values], axis=-1)",
        "    return out[0] if single else out",
        "",
        "",
        *act,
        "",
    ])


def write_exports(directory: Path, policy: SymbolicPolicy, document: dict) -> list[Path]:
    directory = Path(directory)
    texts = (json.dumps(document, indent=2), markdown(document), latex_document(document), python_module(document, policy))
    return [write_atomically(directory / name, text) for name, text in zip(NAMES, texts)]


def load_policy_module(path: Path, game: str, object_names: list[str], state: list[str] | None = None):
    """Import an exported policy.py (it runs as Python: only load files you trust) and check it
    was extracted for this game and these objects."""
    path = Path(path)
    if not path.is_file():
        raise InsightError(f"{path} does not exist", hint="run `insight extract-policy` on the run first, or pass --policy")
    spec = importlib.util.spec_from_file_location("insight_exported_policy", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise InsightError(f"{path} is not a loadable policy module: {type(error).__name__}: {error}") from None
    if (getattr(module, "GAME", None) != game or list(getattr(module, "OBJECTS", [])) != list(object_names)
            or list(getattr(module, "STATE", [])) != list(state or [])):
        raise InsightError(f"{path} was extracted for another game, object set or ego state than this run")
    if not callable(getattr(module, "act", None)):
        raise InsightError(f"{path} has no act(coordinates) function")
    return module
