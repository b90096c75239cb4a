"""One progress bar style for every long-running stage."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        # the average since the start: rich's own estimate is done over the last few updates,
        # which for episodes that end together (same horizon) reads thousands per second
        # (a resumed task counts from where it resumed: its `start` field)
        done = task.completed - task.fields.get("start", 0)
        speed = done / task.elapsed if done and task.elapsed else 0.0
        shown = f"{speed:,.0f}" if speed >= 10 else f"{speed:.2g}"
        return Text(f"{shown} {self.unit}/s" if speed else f"- {self.unit}/s", style="cyan")


def progress_bar(unit: str, enabled: bool = True) -> Progress:
    """A rich progress bar showing done/total, the rate in `unit`/s and the time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not enabled,
    )
