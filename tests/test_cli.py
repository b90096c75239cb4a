import pytest
import torch
from typer.core import TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.errors import InsightError
from insight_cli.runtime import resolve_device

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
