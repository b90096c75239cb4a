"""The checkpoint format: one file with config, weights and metadata.

A checkpoint is a dict of plain data and tensors, so it loads with
`torch.load(weights_only=True)` (no code is ever unpickled). It is written to a temporary file
and renamed into place, so a crash never leaves a half-written checkpoint.

    {"format": "insight-checkpoint", "format_version": 1, "kind": "perception" | "run" | "run-resume",
     "config": {...}, "meta": {...}, "state": {name: state_dict or tensor}}
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from insight_cli import __version__
from insight_cli.errors import InsightError
from insight_cli.files import atomic_output

FORMAT = "insight-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    kind: str
    config: dict
    meta: dict
    state: dict


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
    try:
        # mmap: tensors are read when used, so reading the meta of a 260 MB run.ckpt is cheap
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise InsightError(f"{path} is not a readable insight checkpoint ({str(error).splitlines()[0][:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InsightError(f"{path} is not an insight checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise InsightError(
            f"{path} has checkpoint format {payload.get('format_version')}, this insight reads {FORMAT_VERSION}"
        )
    if kind is not None and payload["kind"] != kind:
        raise InsightError(f"{path} is a {payload['kind']} checkpoint, expected a {kind} checkpoint")
    return Checkpoint(payload["kind"], payload["config"], payload["meta"], payload["state"])
