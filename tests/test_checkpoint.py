import pytest
import torch

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.errors import InsightError


def test_round_trip_loads_weights_only(tmp_path):
    layer = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "a" / "x.ckpt", "perception", {"hidden": 3}, {"game": "Pong"}, {"model": layer.state_dict()})
    torch.load(path, weights_only=True)  # no code needed to read it
    checkpoint = load_checkpoint(path, kind="perception")
    assert checkpoint.config == {"hidden": 3} and checkpoint.meta["game"] == "Pong"
    assert "insight_version" in checkpoint.meta and isinstance(checkpoint.meta["torch_version"], str)
    restored = torch.nn.Linear(3, 2)
    restored.load_state_dict(checkpoint.state["model"])
    assert torch.equal(restored.weight, layer.weight)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.ckpt"]  # no temporary files left


def test_wrong_kind_missing_and_corrupt(tmp_path):
    path = save_checkpoint(tmp_path / "x.ckpt", "perception", {}, {}, {})
    with pytest.raises(InsightError, match="perception checkpoint, expected a run"):
        load_checkpoint(path, kind="run")
    with pytest.raises(InsightError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "bad.ckpt").write_bytes(b"garbage")
    with pytest.raises(InsightError, match="not a readable"):
        load_checkpoint(tmp_path / "bad.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    with pytest.raises(InsightError, match="not an insight checkpoint"):
        load_checkpoint(tmp_path / "foreign.ckpt")


def test_unwritable_location(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InsightError, match="cannot write"):
        save_checkpoint(tmp_path / "file" / "x.ckpt", "perception", {}, {}, {})
