"""Writing artifacts so that a crash or Ctrl-C never leaves a half-written file behind."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from insight_cli.errors import DISK_FULL, InsightError, disk_full
from insight_cli.runtime import current_umask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write, for writers that take a file name (it ends in
    `path`'s suffix, by which some pick the format); renamed onto `path` when the block ends
    without error and removed otherwise."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(path)
        # The pid in the name tells a later write whether this writer is still alive.
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=f".tmp{path.suffix}", dir=path.parent
        )
        os.close(handle)
    except OSError as error:
        raise InsightError(f"cannot write {path}: {error.strerror}") from None
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private; an artifact is not
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if _disk_full(error):
            raise disk_full(path) from None
        raise


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary sibling of `path`, renamed onto it when the block ends
    without error and removed otherwise."""
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        yield stream


def write_atomically(path: Path, data: str | bytes) -> Path:
    with atomic_output(path) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def _disk_full(error: BaseException) -> bool:
    """Whether `error` is, or was raised while handling, a full disk: torch reports a failed
    write as "unexpected pos 221696 vs 221648", raised while the stream's OSError was handled."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries of `path` that writers killed before they could clean up left."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]+\.tmp{re.escape(path.suffix)}")
    for entry in path.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        if found and not process_alive(int(found.group(1))):
            entry.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def ensure_writable(path: Path) -> None:
    """Fail now, not after hours of work, if `path` cannot be written. Creates nothing, so a run
    that fails later leaves no empty folders behind."""
    path = Path(path)
    if path.is_dir():
        raise InsightError(f"cannot write {path}: it is a directory", hint="give the name of the file to write")
    folder = next(parent for parent in path.parents if parent.exists())
    if not folder.is_dir():
        raise InsightError(f"cannot write {path}: {folder} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise InsightError(f"cannot write {path}: {error.strerror}") from None
