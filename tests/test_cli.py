import errno
import subprocess
import sys

import pytest
import torch
import typer
from typer.core import TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from insight_cli.checkpoint import save_checkpoint
from insight_cli.cli import app, verb
from insight_cli.errors import InsightError
from insight_cli.perception.model import PerceptionConfig
from insight_cli.runtime import resolve_device
from insight_cli.train.agent import Agent, AgentConfig

runner = CliRunner()
VERBS = sorted(get_command(app).commands)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_explains_every_option(verb):
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    for param in get_command(app).commands[verb].params:
        if isinstance(param, TyperOption):
            assert param.help, f"{verb} {param.opts} has no help"
            assert param.opts[0] in result.output


def test_games_lists_the_paper_games_with_actions():
    result = runner.invoke(app, ["games"])
    assert result.exit_code == 0
    for name in ["Catch", "MetaDrive", "Pong", "SpaceInvaders", "MsPacman"]:
        assert name in result.output
    assert "RIGHTFIRE" in result.output


def test_games_describes_one_game():
    result = runner.invoke(app, ["games", "Pong"])
    assert result.exit_code == 0
    assert "move the paddle up" in result.output and "ball" in result.output


def test_games_describes_metadrive_and_its_assets():
    from insight_cli.envs.metadrive import asset_status

    result = runner.invoke(app, ["games", "MetaDrive"])
    assert result.exit_code == 0
    assert "steering" in result.output and "road_left" in result.output and "nav2_angle" in result.output
    assert f"assets: {asset_status()}" in result.output and "metadrive.pull_asset" in result.output


def test_unknown_game_is_one_line_error_with_hint():
    result = runner.invoke(app, ["games", "Pongg"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean Pong" in lines[0]


def test_verbose_shows_the_traceback():
    result = runner.invoke(app, ["games", "Pongg", "--verbose"])
    assert result.exit_code == 1
    assert isinstance(result.exception, InsightError)


def test_bad_option_is_a_usage_error():
    assert runner.invoke(app, ["games", "--no-such-option"]).exit_code == 2


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "insight" in result.output


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InsightError, match="--device cpu"):
            resolve_device("cuda")


def _failing(error):
    @verb
    def command(verbose: bool = False):
        raise error

    return command


@pytest.mark.parametrize(
    "error, shown",
    [
        (
            InsightError("a \x1b[1mbold\x1b[0m [red]word[/red]\nand a second line", hint="the \x1b[31mhint"),
            "a bold [red]word[/red] (the hint)",
        ),
        (
            RuntimeError("Error(s) in loading state_dict for Agent:\n\tsize mismatch for feature_centre"),
            "RuntimeError: Error(s) in loading state_dict for Agent: (a bug? rerun with --verbose for the traceback)",
        ),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "names.d"), "names.d: Is a directory (check the path)"),
        (
            OSError(errno.ENOSPC, "No space left on device", "run.ckpt"),
            "disk full while writing run.ckpt (free some space, or write elsewhere)",
        ),
    ],
)
def test_every_error_is_one_plain_line(capsys, error, shown):
    with pytest.raises(typer.Exit) as exited:
        _failing(error)()
    assert exited.value.exit_code == 1
    assert capsys.readouterr().err == f"error: {shown}\n"


def damaged_run(path, **agent):
    """A run.ckpt of a tiny agent whose description (meta.agent) is overridden by `agent`;
    None removes an entry, and weights=... replaces its tensors."""
    weights = agent.pop("weights", {})
    network = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=8), n_actions=3))
    dims = {"n_objects": 2, "hidden": 8, "threshold": 0.5, "n_actions": 3, "n_layers": 1, "n_funcs": 4}
    dims = {key: value for key, value in {**dims, **agent}.items() if value is not None}
    meta = {
        "game": "Catch",
        "objects": [{"slot": 0, "track_id": 0, "name": "ball"}, {"slot": 1, "track_id": 1, "name": "paddle"}],
        "action_meanings": ["NOOP", "RIGHT", "LEFT"],
        "dataset": "none",
        "dataset_fingerprint": "none",
        "agent": dims,
    }
    return save_checkpoint(path, "run", {}, meta, {"agent": {**network.state_dict(), **weights}})


@pytest.mark.parametrize(
    "agent, message",
    [
        ({"hidden": 16}, "holds feature_centre of shape (8,), where the network needs (16,)"),
        ({"hidden": -5}, "gives hidden = -5, not a whole number from 1 to 65536"),
        ({"hidden": 1e12}, "gives hidden = 1000000000000.0, not a whole number from 1 to 65536"),
        ({"n_layers": 10**9}, "gives n_layers = 1000000000, not a whole number from 1 to 65536"),
        ({"n_funcs": None}, "gives n_funcs = None"),
        ({"weights": {"critic.0.bias": torch.full((512,), float("inf"))}}, "holds non-finite weights (critic.0.bias)"),
    ],
)
def test_a_damaged_run_checkpoint_is_one_line(tmp_path, agent, message):
    path = damaged_run(tmp_path / "run.ckpt", **agent)
    result = runner.invoke(app, ["extract-policy", str(path), "--out", str(tmp_path / "policy")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and message in result.output, result.output


def test_a_damaged_checkpoint_is_one_line_for_the_user(tmp_path):
    path = damaged_run(tmp_path / "run.ckpt", hidden=16)
    result = subprocess.run(
        [sys.executable, "-m", "insight_cli", "evaluate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert (
        result.stderr.startswith(f"error: {path} holds feature_centre of shape (8,)") and result.stderr.count("\n") == 1
    )
