"""One progress bar style for every long-running stage."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)

LOG_EVERY = 60.0  # seconds between plain progress lines when the console is a file, not a terminal


def average_rate(task: Task) -> float:
    """Units per second since the task started; a resumed task counts from where it resumed, its
    `done_before` field (not `start`: that is add_task's flag, and start=0 left a fresh run's task
    unstarted, with no rate). rich's own estimate is done over the last few updates, which for
    episodes that end together (same horizon) reads thousands per second."""
    done = task.completed - task.fields.get("done_before", 0)
    return done / task.elapsed if done and task.elapsed else 0.0


def _rate_text(rate: float, unit: str) -> str:
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
    return f"{shown} {unit}/s" if rate else f"- {unit}/s"


class RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(_rate_text(average_rate(task), self.unit), style="cyan")


def progress_line(task: Task, unit: str) -> str:
    """One plain line on how far `task` is: done/total, the share done, the rate and the time left."""
    rate, total = average_rate(task), task.total or 0
    line = f"{task.description}: {task.completed:,.0f}/{total:,.0f} {unit}"
    if total:
        line += f" ({100 * task.completed / total:.0f}%)"
    line += f", {_rate_text(rate, unit)}"
    if rate and total > task.completed:
        minutes = (total - task.completed) / rate / 60
        line += f", about {minutes:.0f} min left" if minutes >= 1 else ", under a minute left"
    return line


class LoggedProgress(Progress):
    """A rich progress bar that, writing to a file (`insight pipeline ... > log` with nohup), adds
    a plain line per task every LOG_EVERY seconds: rich draws nothing there until a bar is done,
    so an hour of training would show nothing."""

    def __init__(self, *columns, unit: str, **kwargs):
        super().__init__(*columns, **kwargs)
        self.unit = unit
        self._logged: dict[TaskID, float] = {}

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log(task_id)

    def update(self, task_id: TaskID, **changes) -> None:
        super().update(task_id, **changes)
        self._log(task_id)

    def _log(self, task_id: TaskID) -> None:
        if self.disable or self.console.is_terminal:
            return
        now = time.monotonic()
        if now - self._logged.setdefault(task_id, now) < LOG_EVERY:
            return
        self._logged[task_id] = now
        task = next(task for task in self.tasks if task.id == task_id)
        self.console.print(progress_line(task, self.unit), markup=False, highlight=False, soft_wrap=True)


def progress_bar(unit: str, enabled: bool = True) -> Progress:
    """A rich progress bar showing done/total, the rate in `unit`/s and the time left."""
    return LoggedProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeRemainingColumn(),
        unit=unit,
        console=console,
        transient=False,
        disable=not enabled,
    )
