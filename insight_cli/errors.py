"""The one error type the CLI turns into a one-line message with a hint."""

from __future__ import annotations

import errno
import re

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# Terminal control sequences (colours, cursor moves) and other control characters: torch and
# servers put them in their messages, and a one-line error must print as plain text.
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x08\x0b-\x1f\x7f]")


class InsightError(Exception):
    """A problem with the user's input or environment, not a bug: shown as one line."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(InsightError):
    """A bad option value: the CLI exits with code 2, like any usage error."""


def one_line(text: str) -> str:
    """The first non-blank line of `text`, without control codes."""
    lines = [line.strip() for line in _CONTROL.sub("", text.replace("\t", " ")).splitlines()]
    return next((line for line in lines if line), "")


def disk_full(path) -> InsightError:
    return InsightError(f"disk full while writing {path}", hint="free some space, or write elsewhere")


def from_os_error(error: OSError) -> InsightError:
    """What the system refused (a full disk, a folder given for a file) as one line."""
    if error.errno in DISK_FULL:
        return disk_full(error.filename or "a file")
    if error.filename is None:
        return InsightError(error.strerror or str(error))
    return InsightError(f"{error.filename}: {error.strerror or error}", hint="check the path")


def as_insight_error(error: Exception) -> InsightError:
    """Any error as the one line the CLI shows: ours as they are, the system's refusals as
    such, anything else as a likely bug."""
    if isinstance(error, InsightError):
        shown = error
    elif isinstance(error, OSError):
        shown = from_os_error(error)
    else:
        shown = InsightError(f"{type(error).__name__}: {error}", hint="a bug? rerun with --verbose for the traceback")
    return type(shown)(one_line(shown.message), hint=shown.hint and one_line(shown.hint))
