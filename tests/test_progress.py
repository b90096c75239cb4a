import io
import time

from rich.console import Console

from insight_cli import progress


def test_a_bar_written_to_a_file_logs_plain_lines_on_how_far_it_is(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=log, width=120))
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    with progress.progress_bar("frames") as bar:
        task = bar.add_task("segment Pong", total=40)
        for _ in range(3):
            bar.advance(task, 10)
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == [
        "segment Pong: 10/40 frames (25%)",
        "segment Pong: 20/40 frames (50%)",
        "segment Pong: 30/40 frames (75%)",
    ]
    assert "frames/s" in lines[0] and "left" in lines[0]
    assert "40/40" not in lines[2] and len(lines) == 4  # then rich's own finished bar


def test_a_bar_on_a_terminal_or_a_disabled_one_adds_no_lines(monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    for console, enabled in (
        (Console(file=io.StringIO(), force_terminal=True), True),
        (Console(file=io.StringIO()), False),
    ):
        monkeypatch.setattr(progress, "console", console)
        with progress.progress_bar("env steps", enabled) as bar:
            task = bar.add_task("train Pong", total=10)
            bar.update(task, advance=5)
        assert "5/10 env steps (50%)" not in console.file.getvalue()


def test_a_resumed_task_counts_its_rate_from_where_it_resumed():
    with progress.progress_bar("env steps", enabled=False) as bar:
        task = bar.add_task("train Pong", total=1000, completed=500, done_before=500)
        time.sleep(0.05)
        bar.update(task, advance=10)
    (state,) = bar.tasks
    assert state.started and 0 < progress.average_rate(state) <= 10 / 0.05
