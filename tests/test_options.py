"""One declaration per option: the CLI, the defaults and the bounds come from the config field."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from insight_cli.errors import UsageError
from insight_cli.options import check_bounds, command, device_option, option

runner = CliRunner()


@dataclass
class Toy:
    source: Path = option(help="Where from.", argument=True)
    steps: int = option(5, "How many steps.", min=1, max=100)
    rate: float = option(0.1, "How fast.", above=0.0)
    mode: str = option("fast", "How.", choices=("fast", "slow"))
    loud: bool = option(True, "Say it.", flags=("--loud/--quiet",))
    force: bool = option(False, "Do it anyway.")
    out: Path | None = option(None, "Where to.")
    device: str = device_option()
    internal: int = 7  # not an option: no flag for it


def toy_app(seen: list):
    app = typer.Typer()

    def report(config: Toy) -> None:
        """Do the toy thing."""
        check_bounds(config)
        seen.append(config)

    command(app, Toy, report, name="toy")
    app.command("other")(lambda: None)  # two commands, so `toy` is a subcommand as in insight
    return app


def test_the_command_takes_every_option_field_with_its_default_and_builds_the_config():
    seen = []
    result = runner.invoke(toy_app(seen), ["toy", "in.txt", "--steps", "9", "--mode", "slow", "--quiet", "--force"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config == Toy(Path("in.txt"), steps=9, mode="slow", loud=False, force=True)
    assert config.internal == 7 and isinstance(config.mode, str)  # the plain value, not an Enum


def test_help_shows_each_declared_option_once_and_nothing_undeclared():
    result = runner.invoke(toy_app([]), ["toy", "--help"], env={"COLUMNS": "200"})
    for text in (
        "How many steps.",
        "--loud",
        "--quiet",
        "--force",
        "--out",
        "fast|slow",
        "auto|cpu|cuda",
        "Do the toy thing.",
    ):
        assert result.output.count(text) == 1, text
    assert "--internal" not in result.output


@pytest.mark.parametrize("arguments", [["--steps", "0"], ["--steps", "101"], ["--mode", "medium"]])
def test_the_cli_refuses_values_out_of_the_declared_bounds(arguments):
    seen = []
    result = runner.invoke(toy_app(seen), ["toy", "in.txt", *arguments])
    assert result.exit_code == 2 and not seen


@pytest.mark.parametrize(
    "values, message",
    [
        ({"steps": 0}, "--steps must be at least 1"),
        ({"steps": 101}, "--steps must be at most 100"),
        ({"rate": 0.0}, "--rate must be above 0"),
        ({"rate": float("nan")}, "--rate must be a finite number"),
        ({"rate": float("inf")}, "--rate must be a finite number"),
        ({"mode": "medium"}, "--mode must be one of fast, slow"),
    ],
)
def test_configs_made_in_python_meet_the_same_bounds(values, message):
    with pytest.raises(UsageError, match=message):
        check_bounds(Toy(Path("x"), **values))
    check_bounds(Toy(Path("x")))  # the defaults are in bounds
