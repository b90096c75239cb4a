"""The checkpoint format: one file with config, weights and metadata.

A checkpoint is a dict of plain data and tensors, so it loads with
`torch.load(weights_only=True)` (no code is ever unpickled). It is written to a temporary file
and renamed into place, so a crash never leaves a half-written checkpoint.

    {"format": "insight-checkpoint", "format_version": 1, "kind": "perception" | "run" | ...,
     "config": {...}, "meta": {...}, "state": {name: state_dict or tensor}}

Loading checks what the stages read (CONTENTS), and that a perception checkpoint's weights fit
the network its config describes and are finite, so a damaged or hand-made file fails with one
line naming what is wrong, not deep inside a stage.
"""

from __future__ import annotations

import numbers
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from insight_cli import __version__
from insight_cli.errors import InsightError, one_line
from insight_cli.files import atomic_output

FORMAT = "insight-checkpoint"
FORMAT_VERSION = 1
# Far above the sizes of any network here (the paper's widest layer is 2048), and low enough
# that building a network from a file's sizes to compare shapes with stays instant.
SIZE_LIMIT = 65536
DAMAGED = "is the file damaged, or written with other settings?"

# What the stages read from each kind, beyond the layout every checkpoint has.
CONTENTS = {
    "perception": {
        "config": ("n_objects", "hidden"),
        "meta": ("game", "objects", "dataset_fingerprint"),
        "state": ("model",),
    },
    "perception-resume": {
        "meta": ("dataset_fingerprint", "history", "best"),
        "state": ("model", "optimizer", "generator"),
    },
    "run": {
        "meta": ("game", "objects", "action_meanings", "dataset", "dataset_fingerprint", "agent"),
        "state": ("agent",),
    },
}


@dataclass
class Checkpoint:
    kind: str
    config: dict
    meta: dict
    state: dict


def plain_config(config) -> dict:
    """A stage's config dataclass as the plain dict a checkpoint keeps (paths as strings)."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}


def save_checkpoint(path: Path, kind: str, config: dict, meta: dict, state: dict) -> Path:
    """Atomically write a checkpoint; tensors are moved to the CPU first."""
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "meta": {**meta, "insight_version": __version__, "torch_version": str(torch.__version__)},
        "state": _to_cpu(state),
    }
    with atomic_output(path) as stream:
        torch.save(payload, stream)
    return path


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def load_checkpoint(path: Path, kind: str | None = None) -> Checkpoint:
    """Read a checkpoint without unpickling code; `kind` checks it is the expected one."""
    path = Path(path)
    if not path.is_file():
        raise InsightError(f"no checkpoint at {path}")
    checkpoint = _layout(path, _read(path))
    if kind is not None and checkpoint.kind != kind:
        raise InsightError(f"{path} is a {checkpoint.kind} checkpoint, expected a {kind} checkpoint")
    for section, keys in CONTENTS.get(checkpoint.kind, {}).items():
        missing = [key for key in keys if key not in getattr(checkpoint, section)]
        if missing:
            raise InsightError(
                f"{path} is a {checkpoint.kind} checkpoint whose {section} lacks {', '.join(map(repr, missing))}",
                hint=DAMAGED,
            )
    if checkpoint.kind == "perception":
        _check_perception(path, checkpoint)
    return checkpoint


def _read(path: Path):
    try:
        # mmap: tensors are read when used, so reading the meta of a 260 MB run.ckpt is cheap
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        # torch's message advises loading the file unsafely: never pass that on
        found = re.search(r"Unsupported (?:global: GLOBAL|class) (\S+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise InsightError(
            f"{path} is not an insight checkpoint: it holds Python objects{what}, "
            "and insight reads only tensors and plain data"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise InsightError(f"{path} is not a readable insight checkpoint ({one_line(str(error))[:120]})") from None


def _layout(path: Path, payload) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InsightError(f"{path} is not an insight checkpoint")
    version = payload.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:  # repr: the string "1" is not 1
        raise InsightError(f"{path} has checkpoint format {version!r}, this insight reads {FORMAT_VERSION!r}")
    for key, expected in (("kind", str), ("config", dict), ("meta", dict), ("state", dict)):
        if not isinstance(payload.get(key), expected):
            raise InsightError(
                f"{path} is a damaged insight checkpoint: its {key!r} is missing or not a {expected.__name__}",
                hint="write it again with insight",
            )
    return Checkpoint(payload["kind"], payload["config"], payload["meta"], payload["state"])


def _check_perception(path: Path, checkpoint: Checkpoint) -> None:
    from insight_cli.perception.model import PerceptionConfig, PerceptionNet  # the format's only kind-specific check

    check_sizes(path, checkpoint.config, ("n_objects", "hidden"))
    config = PerceptionConfig.from_dict(checkpoint.config)
    check_weights(path, expected_weights(path, lambda: PerceptionNet(config)), checkpoint.state["model"])


def check_sizes(path: Path, values: dict, names: tuple[str, ...], least: int = 1) -> None:
    """Refuse network sizes no real file has (a damaged one's -5 or 1e12) before any network is built."""
    for name in names:
        value = values.get(name) if isinstance(values, dict) else None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not least <= value <= SIZE_LIMIT:
            raise InsightError(
                f"{path} gives {name} = {value!r}, not a whole number from {least} to {SIZE_LIMIT}", hint=DAMAGED
            )


def expected_weights(path: Path, build: Callable[[], torch.nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict, shapes only, of the network `build()` makes from a checkpoint's settings."""
    try:
        with torch.device("meta"):  # no memory: a file's sizes cannot exhaust it
            return build().state_dict()
    except ValueError as error:  # a setting out of its choices, such as an unknown encoder
        raise InsightError(
            f"{path} describes a network insight cannot build ({one_line(str(error))})", hint=DAMAGED
        ) from None


def check_weights(path: Path, expected: dict[str, torch.Tensor], state, optional: str | None = None) -> None:
    """Refuse weights that do not fit a network's `expected` state dict (names and shapes; those
    starting with `optional` may be absent) or are not finite, naming the first culprit where
    torch would dump every mismatching tensor."""
    if not isinstance(state, dict):
        raise InsightError(f"{path} holds no weights where its network's belong", hint=DAMAGED)
    problems = _misfits(expected, state, optional)
    if problems:
        more = f", and {len(problems) - 1} more tensors do not fit" if len(problems) > 1 else ""
        raise InsightError(f"{path} {problems[0]}{more}", hint=DAMAGED)
    diverged = next(
        (name for name, tensor in state.items() if tensor.is_floating_point() and not tensor.isfinite().all()), None
    )
    if diverged:
        raise InsightError(
            f"{path} holds non-finite weights ({diverged})",
            hint="its training diverged, or the file is damaged: train it again",
        )


def _misfits(expected: dict[str, torch.Tensor], state: dict, optional: str | None) -> list[str]:
    """What keeps `state` from loading into the network of the `expected` state dict, a phrase per tensor."""
    problems = []
    for name, tensor in expected.items():
        found = state.get(name)
        if found is None:
            if not (optional and name.startswith(optional)):
                problems.append(f"lacks the weights {name}")
        elif not isinstance(found, torch.Tensor) or found.shape != tensor.shape:
            shape = tuple(found.shape) if isinstance(found, torch.Tensor) else type(found).__name__
            problems.append(f"holds {name} of shape {shape}, where the network needs {tuple(tensor.shape)}")
    return problems + [f"holds weights its network has no place for ({name})" for name in state if name not in expected]
