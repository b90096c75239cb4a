import json

import pytest
from typer.testing import CliRunner

from insight_cli import pipeline
from insight_cli.cli import app
from insight_cli.errors import UsageError
from insight_cli.pipeline import PipelineConfig, Preset, run

runner = CliRunner()
TINY = Preset(
    frames=200,
    epochs=1,
    total_steps=256,
    num_steps=16,
    eval_episodes=1,
    eval_every=1.0,
    episodes=1,
    max_terms=8,
    decisions=1,
    hidden=32,
)


@pytest.mark.slow
def test_every_stage_then_only_what_changed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(pipeline.PRESETS, "demo", TINY)
    result = run(PipelineConfig(game="Catch", preset="demo", device="cpu"))
    assert result.ran == list(pipeline.STAGES) and result.skipped == []
    run_dir = tmp_path / "data/Catch/runs/demo"
    for name in ("run.ckpt", "policy.py", "explanation.md", "evaluation/neural.json", "evaluation/symbolic.mp4"):
        assert (run_dir / name).exists(), name
    # a barely trained actor may give constant equations, which make no claims: none may be wrong
    assert set(result.scores) == {"neural", "eql", "symbolic"} and result.faithfulness["contradicted"] == 0

    again = run(PipelineConfig(game="Catch", preset="demo", device="cpu"))
    assert again.ran == [] and again.skipped == list(pipeline.STAGES)
    assert again.scores == result.scores

    monkeypatch.setitem(pipeline.PRESETS, "demo", Preset(**{**TINY.__dict__, "decisions": 2}))
    changed = run(PipelineConfig(game="Catch", preset="demo", device="cpu"))
    assert changed.ran == ["explain"]
    assert len(json.loads((run_dir / "explanation.json").read_text())["decisions"]) == 2

    result = runner.invoke(app, ["pipeline", "--game", "Catch", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "symbolic actor return" in result.output and "terms per action" in result.output


def test_unknown_preset():
    with pytest.raises(UsageError, match="--preset"):
        run(PipelineConfig(game="Catch", preset="huge"))
    assert runner.invoke(app, ["pipeline", "--preset", "huge"]).exit_code == 2


@pytest.mark.slow
def test_a_first_train_interrupted_resumes_where_it_stopped(tmp_path, monkeypatch):
    """The manifest records train's settings only once it finishes: the run's own checkpoint
    must say that it can be resumed (before, a first run stopped by Ctrl-C started again)."""
    from insight_cli.train import stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(pipeline.PRESETS, "demo", Preset(**{**TINY.__dict__, "total_steps": 4 * 8 * 16}))
    schedule, updates = stage.schedule, []

    def recorded(update, *args):
        updates.append(update)
        if update == 2 and len(updates) == 2:
            stage._Stop.requested = True  # as Ctrl-C during the second update
        return schedule(update, *args)

    monkeypatch.setattr(stage, "schedule", recorded)
    with pytest.raises(KeyboardInterrupt):
        run(PipelineConfig(game="Catch", preset="demo", device="cpu"))
    result = run(PipelineConfig(game="Catch", preset="demo", device="cpu"))
    assert updates == [1, 2, 3, 4] and result.ran == list(pipeline.STAGES[2:])
    train = json.loads((tmp_path / "data/Catch/runs/demo/result.json").read_text())
    assert train["global_step"] == 4 * 8 * 16 and not train["interrupted"]
