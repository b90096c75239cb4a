import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from insight_cli import files
from insight_cli.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint
from insight_cli.errors import InsightError
from insight_cli.files import ensure_writable, write_atomically
from insight_cli.perception.model import PerceptionConfig, PerceptionNet


def test_round_trip_loads_weights_only(tmp_path):
    layer = torch.nn.Linear(3, 2)
    path = save_checkpoint(
        tmp_path / "a" / "x.ckpt", "run-resume", {"hidden": 3}, {"game": "Pong"}, {"model": layer.state_dict()}
    )
    torch.load(path, weights_only=True)  # no code needed to read it
    checkpoint = load_checkpoint(path, kind="run-resume")
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


def perception_checkpoint(path, weights=None, **config):
    """A perception checkpoint as pretrain writes it, of a tiny network; `config` overrides its
    saved settings and `weights` its tensors."""
    network = PerceptionNet(PerceptionConfig(n_objects=2, hidden=8))
    state = {**network.state_dict(), **(weights or {})}
    meta = {"game": "Catch", "objects": [], "dataset_fingerprint": "f"}
    return save_checkpoint(path, "perception", {**asdict(network.config), **config}, meta, {"model": state})


def test_a_perception_checkpoint_that_fits_its_config_loads(tmp_path):
    checkpoint = load_checkpoint(perception_checkpoint(tmp_path / "p.ckpt"), kind="perception")
    PerceptionNet(PerceptionConfig.from_dict(checkpoint.config)).load_state_dict(checkpoint.state["model"])


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"hidden": 16},
            r"holds encoder\.project\.0\.weight of shape \(8, \d+\), where the network needs \(16, \d+\), and 8 more",
        ),
        ({"hidden": -5}, r"gives hidden = -5, not a whole number from 1 to 65536"),
        ({"hidden": 1e12}, r"gives hidden = 1000000000000\.0, not a whole number"),
        ({"hidden": 10**12}, r"gives hidden = 1000000000000, not a whole number"),
        ({"n_objects": "2"}, r"gives n_objects = '2', not a whole number"),
    ],
)
def test_a_perception_checkpoint_whose_config_does_not_fit_its_weights_is_one_line(tmp_path, config, message):
    path = perception_checkpoint(tmp_path / "p.ckpt", **config)
    with pytest.raises(InsightError, match=message) as caught:
        load_checkpoint(path, kind="perception")
    assert "\n" not in str(caught.value)


def test_a_perception_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    poisoned = PerceptionNet(PerceptionConfig(n_objects=2, hidden=8)).state_dict()["shape_head.bias"]
    poisoned[0] = float("nan")
    path = perception_checkpoint(tmp_path / "p.ckpt", weights={"shape_head.bias": poisoned})
    with pytest.raises(InsightError, match=r"non-finite weights \(shape_head\.bias\).*diverged"):
        load_checkpoint(path, kind="perception")


@pytest.mark.parametrize("part", ["kind", "config", "meta", "state"])
def test_a_checkpoint_without_a_part_names_it(tmp_path, part):
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "run", "config": {}, "meta": {}, "state": {}}
    del payload[part]
    torch.save(payload, tmp_path / "x.ckpt")
    with pytest.raises(InsightError, match=f"damaged insight checkpoint: its '{part}' is missing"):
        load_checkpoint(tmp_path / "x.ckpt")


def test_a_run_checkpoint_without_what_the_stages_read_names_it(tmp_path):
    path = save_checkpoint(tmp_path / "run.ckpt", "run", {}, {"game": "Catch", "objects": []}, {"agent": {}})
    with pytest.raises(
        InsightError,
        match="run checkpoint whose meta lacks 'action_meanings', 'dataset', 'dataset_fingerprint', 'agent'",
    ):
        load_checkpoint(path, kind="run")


@pytest.mark.parametrize("version, shown", [("1", "'1'"), (1.0, "1.0"), (True, "True"), (2, "2")])
def test_a_format_version_of_another_type_is_shown_as_such(tmp_path, version, shown):
    torch.save(
        {"format": FORMAT, "format_version": version, "kind": "run", "config": {}, "meta": {}, "state": {}},
        tmp_path / "x.ckpt",
    )
    with pytest.raises(InsightError, match=f"has checkpoint format {re.escape(shown)}, this insight reads 1$"):
        load_checkpoint(tmp_path / "x.ckpt")


def test_pickled_objects_are_refused_without_torchs_advice_to_load_unsafely(tmp_path):
    torch.save({"format": FORMAT, "meta": np.float64(1.0)}, tmp_path / "x.ckpt")
    with pytest.raises(InsightError, match=r"holds Python objects \(numpy\S*scalar\)") as caught:
        load_checkpoint(tmp_path / "x.ckpt")
    message = str(caught.value)
    assert "weights_only" not in message and "trust" not in message and "\x1b" not in message


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_named_and_leaves_nothing(tmp_path, monkeypatch):
    # /dev/full fails every write with ENOSPC, as a full disk does; torch's zip writer then
    # raises "unexpected pos ..." while handling it
    monkeypatch.setattr(files, "open", lambda path, mode: open("/dev/full", mode), raising=False)
    target = tmp_path / "run.ckpt"
    with pytest.raises(InsightError, match=f"^disk full while writing {re.escape(str(target))} "):
        save_checkpoint(target, "run", {}, {}, {"agent": {"weight": torch.zeros(100_000)}})
    assert list(tmp_path.iterdir()) == []


def test_the_next_write_removes_a_killed_writers_temporary(tmp_path):
    target = tmp_path / "x.json"
    code = (
        "import sys, time\nfrom insight_cli.files import atomic_output\nwith atomic_output(sys.argv[1]) as stream:\n"
        "    stream.write(b'half'); stream.flush(); print('writing', flush=True); time.sleep(60)"
    )
    writer = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline() == "writing\n"
    writer.kill()
    writer.wait()
    [left] = tmp_path.iterdir()
    assert left.name.startswith(f".x.json.{writer.pid}.")
    alive = tmp_path / f".x.json.{os.getpid()}.abcdefgh.tmp.json"  # a live writer's: kept
    alive.write_text("")
    write_atomically(target, "{}")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([alive.name, "x.json"])


def test_ensure_writable_refuses_a_directory_and_creates_nothing(tmp_path):
    with pytest.raises(InsightError, match="it is a directory"):
        ensure_writable(tmp_path)
    ensure_writable(tmp_path / "new" / "deeper" / "x.ckpt")
    assert list(tmp_path.iterdir()) == []
