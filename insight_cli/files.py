"""Writing artifacts so that a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from insight_cli.errors import InsightError
from insight_cli.runtime import current_umask


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary sibling of `path`, renamed onto it when the block ends
    without error and removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise InsightError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private; an artifact is not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: str | bytes) -> Path:
    with atomic_output(path) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def ensure_writable(path: Path) -> None:
    """Fail now, not after hours of work, if `path` cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise InsightError(f"cannot write {path}: {error.strerror}") from None
