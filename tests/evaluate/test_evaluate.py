import json
import shutil
from dataclasses import replace

import imageio.v3 as iio
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate import stage
from insight_cli.evaluate.stage import EvaluateConfig, run
from insight_cli.extract_policy.export import policy_document, read_policy, write_exports
from insight_cli.extract_policy.stage import ExtractConfig
from insight_cli.extract_policy.stage import run as extract
from insight_cli.extract_policy.symbolic import variables_for

runner = CliRunner()


def test_scores_table_and_video(catch_run, tmp_path):
    result = run(
        EvaluateConfig(
            checkpoint=catch_run,
            actor="eql",
            episodes=3,
            num_envs=2,
            video=True,
            video_steps=40,
            out=tmp_path,
            device="cpu",
        )
    )
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
    extract(
        ExtractConfig(
            checkpoint=catch_run, max_terms=None, threshold=0.0, digits=15, episodes=0, out=tmp_path, device="cpu"
        )
    )
    settings = dict(checkpoint=catch_run, episodes=4, out=tmp_path, device="cpu", seed=3)
    symbolic = run(EvaluateConfig(actor="symbolic", policy=tmp_path / "policy.json", **settings)).summary
    eql = run(EvaluateConfig(actor="eql", **settings)).summary
    neural = run(EvaluateConfig(actor="neural", **settings)).summary
    assert symbolic["mean"] == eql["mean"] and symbolic["mean_length"] == eql["mean_length"]
    assert neural["episodes"] == 4


def test_bad_input(catch_run, tmp_path):
    with pytest.raises(UsageError, match="needs --actor symbolic"):
        run(EvaluateConfig(checkpoint=catch_run, actor="eql", policy=tmp_path / "policy.json", out=tmp_path))
    with pytest.raises(InsightError, match="does not exist"):
        run(EvaluateConfig(checkpoint=catch_run, actor="symbolic", policy=tmp_path / "policy.json", out=tmp_path))
    (tmp_path / "policy.py").write_text("def act(c):\n    return 0\n")
    with pytest.raises(InsightError, match="never runs"):
        run(EvaluateConfig(checkpoint=catch_run, actor="symbolic", policy=tmp_path / "policy.py", out=tmp_path))
    with pytest.raises(InsightError, match="expected a run checkpoint"):
        run(EvaluateConfig(checkpoint=catch_run.parents[2] / "perception.ckpt", out=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policy.py"]


def other_runs_policies(catch_run, directory):
    """policy.json files like the run's, but extracted for Pong, and for other objects."""
    extract(ExtractConfig(checkpoint=catch_run, max_terms=4, episodes=0, out=directory, device="cpu"))
    policy, document = read_policy(directory / "policy.json")
    (directory / "pong.json").write_text(json.dumps({**document, "game": "Pong"}))
    objects = ["puck", "paddle"]
    other = replace(policy, variables=variables_for(objects))
    write_exports(
        directory / "puck",
        other,
        policy_document(other, "Catch", {}, objects, {key: document[key] for key in ("run", "fidelity", "returns")}),
    )
    return [directory / "pong.json", directory / "puck" / "policy.json"]


def test_a_policy_of_another_game_or_object_set_is_refused(catch_run, tmp_path):
    for policy in other_runs_policies(catch_run, tmp_path):
        with pytest.raises(InsightError, match="another game, object set"):
            run(EvaluateConfig(checkpoint=catch_run, actor="symbolic", policy=policy, out=tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_cli(catch_run, tmp_path):
    result = runner.invoke(
        app, ["evaluate", str(catch_run), "--episodes", "2", "--out", str(tmp_path), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "2 episodes: mean" in result.output and (tmp_path / "eql.json").exists()
    result = runner.invoke(app, ["evaluate", str(catch_run), "--actor", "bogus"])
    assert result.exit_code == 2


def test_the_symbolic_actor_reads_policy_json_and_never_imports_policy_py(catch_run, tmp_path):
    run_path = tmp_path / "run.ckpt"
    shutil.copy(catch_run, run_path)
    extract(ExtractConfig(checkpoint=run_path, max_terms=4, episodes=0, device="cpu"))
    (tmp_path / "policy.py").write_text("import pathlib\npathlib.Path(__file__).with_name('pwned').touch()\n")
    result = runner.invoke(
        app, ["evaluate", str(run_path), "--actor", "symbolic", "--episodes", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "pwned").exists()
    assert json.loads((tmp_path / "evaluation" / "symbolic.json").read_text())["episodes"] == 1


def test_an_unwritable_output_folder_fails_before_any_episode(catch_run, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(stage, "play_episodes", lambda *args, **kwargs: pytest.fail("played before checking --out"))
    with pytest.raises(InsightError, match="cannot write"):
        run(EvaluateConfig(checkpoint=catch_run, episodes=1, out=tmp_path / "file" / "evaluation", device="cpu"))
