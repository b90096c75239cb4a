import json

import imageio.v3 as iio
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate.stage import EvaluateConfig, run
from insight_cli.extract_policy.stage import ExtractConfig
from insight_cli.extract_policy.stage import run as extract

runner = CliRunner()


def test_scores_table_and_video(catch_run, tmp_path):
    result = run(EvaluateConfig(checkpoint=catch_run, actor="eql", episodes=3, num_envs=2, video=True, video_steps=40,
                                out=tmp_path, device="cpu"))
    summary = result.summary
    table = pq.read_table(tmp_path / "eql_episodes.parquet").to_pydict()
    assert summary["episodes"] == 3 and len(table["return"]) == 3
    assert summary["mean"] == pytest.approx(sum(table["return"]) / 3)
    assert summary["min"] <= summary["mean"] <= summary["max"] and summary["std"] >= 0
    assert all(-20 <= score <= 20 for score in table["return"]) and all(length > 0 for length in table["length"])
    assert json.loads((tmp_path / "eql.json").read_text()) == summary
    video = iio.imread(tmp_path / "eql.mp4")
    assert video.shape[0] == 40 and video.shape[-1] == 3


def test_the_exported_equations_play_like_the_eql_actor(catch_run, tmp_path):
    """Extracted without pruning or rounding, the equations choose as the EQL actor does, so
    the same episodes give the same scores."""
    extract(ExtractConfig(checkpoint=catch_run, threshold=0.0, digits=15, episodes=0, out=tmp_path, device="cpu"))
    settings = dict(checkpoint=catch_run, episodes=4, out=tmp_path, device="cpu", seed=3)
    symbolic = run(EvaluateConfig(actor="symbolic", policy=tmp_path / "policy.py", **settings)).summary
    eql = run(EvaluateConfig(actor="eql", **settings)).summary
    neural = run(EvaluateConfig(actor="neural", **settings)).summary
    assert symbolic["mean"] == eql["mean"] and symbolic["mean_length"] == eql["mean_length"]
    assert neural["episodes"] == 4


def test_bad_input(catch_run, tmp_path):
    with pytest.raises(UsageError, match="needs --actor symbolic"):
        run(EvaluateConfig(checkpoint=catch_run, actor="eql", policy=tmp_path / "policy.py", out=tmp_path))
    with pytest.raises(InsightError, match="does not exist"):
        run(EvaluateConfig(checkpoint=catch_run, actor="symbolic", policy=tmp_path / "policy.py", out=tmp_path))
    (tmp_path / "other.py").write_text("GAME = 'Pong'\nOBJECTS = []\ndef act(c):\n    return 0\n")
    with pytest.raises(InsightError, match="another game"):
        run(EvaluateConfig(checkpoint=catch_run, actor="symbolic", policy=tmp_path / "other.py", out=tmp_path))
    with pytest.raises(InsightError, match="expected a run checkpoint"):
        run(EvaluateConfig(checkpoint=catch_run.parents[2] / "perception.ckpt", out=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.py"]


def test_cli(catch_run, tmp_path):
    result = runner.invoke(app, ["evaluate", str(catch_run), "--episodes", "2", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "2 episodes: mean" in result.output and (tmp_path / "eql.json").exists()
    result = runner.invoke(app, ["evaluate", str(catch_run), "--actor", "bogus"])
    assert result.exit_code == 2
