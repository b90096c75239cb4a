import json
import os
import re
import subprocess
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from insight_cli import dataset as dataset_module
from insight_cli.dataset import SCHEMA_VERSION, DatasetWriter, assign_splits, load_dataset, stack_indices
from insight_cli.envs import make_vector_env
from insight_cli.errors import InsightError
from insight_cli.segment.stage import SegmentConfig, run


def write_tiny(path, frames=6, episodes=(0, 0, 0, 1, 1, 1)):
    with DatasetWriter(path, {"game": "Catch"}) as writer:
        for index in range(frames):
            gray = np.full((84, 84), index, np.uint8)
            frame_id = writer.add_frame(episodes[index], index % 3, b"png", gray, action=index % 3, reward=0.5)
            boxes = np.array([[0, 0, 42, 21], [10, 20, 30, 40]])
            writer.add_objects(
                frame_id, [0, 1], ["ball", "paddle"], boxes, [100, 400], [[1, 2, 3], [4, 5, 6]], (84, 84)
            )
        return writer.finish(
            [
                {"track_id": 0, "name": "ball", "frames_seen": frames},
                {"track_id": 1, "name": "paddle", "frames_seen": frames},
            ]
        )


def test_round_trip(tmp_path):
    dataset = write_tiny(tmp_path / "ds")
    assert dataset.meta["schema_version"] == SCHEMA_VERSION and dataset.meta["counts"]["frames"] == 6
    assert dataset.frames.column("split").to_pylist() == ["train"] * 3 + ["test"] * 3
    gray = dataset.gray_frames()
    assert gray.shape == (6, 84, 84) and gray[4].max() == 4
    first = dataset.objects.slice(0, 1).to_pylist()[0]
    assert first["x0"] == 0 and first["x1"] == pytest.approx(0.5) and first["y1"] == pytest.approx(0.25)
    assert first["cx"] == pytest.approx(0.25) and first["area"] == pytest.approx(100 / 84**2)
    assert (first["r"], first["g"], first["b"]) == (1, 2, 3)
    assert dataset.track_names == {0: "ball", 1: "paddle"}
    assert load_dataset(tmp_path / "ds").meta["fingerprint"] == dataset.meta["fingerprint"]


def test_ego_states_round_trip_and_are_all_or_nothing(tmp_path):
    assert write_tiny(tmp_path / "plain").states() is None
    states = np.random.default_rng(0).random((3, 19)).astype(np.float32)
    with DatasetWriter(tmp_path / "driving", {"game": "MetaDrive"}) as writer:
        for index, state in enumerate(states):
            writer.add_frame(0, index, b"png", np.zeros((84, 84), np.uint8), -1, 0.0, state)
        with pytest.raises(ValueError, match="every frame or with none"):
            writer.add_frame(0, 3, b"png", np.zeros((84, 84), np.uint8), -1, 0.0)
        writer.finish([])
    np.testing.assert_array_equal(load_dataset(tmp_path / "driving").states(), states)


def test_stack_indices_pad_at_episode_starts():
    indices = stack_indices(np.array([0, 0, 0, 0, 0, 1, 1]), np.array([0, 1, 2, 3, 4, 0, 1]))
    assert indices[0].tolist() == [-1, -1, -1, 0]
    assert indices[4].tolist() == [1, 2, 3, 4]
    assert indices[6].tolist() == [-1, -1, 5, 6]


def test_splits_are_contiguous_episode_blocks():
    episodes = np.repeat(np.arange(10), 10)
    split = assign_splits(episodes)
    assert (split[:80] == "train").all() and (split[80:] == "test").all()
    single = assign_splits(np.zeros(10, int))
    assert single.tolist() == ["train"] * 8 + ["test"] * 2
    two = assign_splits(np.array([0] * 9 + [1]))
    assert two.tolist() == ["train"] * 9 + ["test"]


@pytest.mark.parametrize("game,frames", [("Catch", 300), ("Pong", 200)])
def test_dataset_stacks_equal_the_training_env(game, frames, tmp_path):
    """One preprocessing truth, end to end: replaying the dataset's actions in the training env
    from the same seed shows exactly the stacks rebuilt from the dataset."""
    dataset = load_dataset(run(SegmentConfig(game=game, frames=frames, seed=5, out=tmp_path / "ds")).dataset)
    gray = np.concatenate([np.zeros((1, 84, 84), np.uint8), dataset.gray_frames()])
    stacks = gray[dataset.stack_indices() + 1]  # row 0 is the zero padding
    actions = dataset.frames.column("action").to_numpy()
    env = make_vector_env(game, num_envs=1, seed=5)
    obs = env.reset()
    for row in range(dataset.frames.num_rows):
        np.testing.assert_array_equal(stacks[row], obs[0])
        obs = env.step(actions[row : row + 1]).obs


def corrupt(path, name, content):
    (path / name).write_bytes(content)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: (p / "dataset.json").unlink(), "not an insight dataset"),
        (lambda p: corrupt(p, "dataset.json", b"{nope"), "corrupt"),
        (lambda p: corrupt(p, "dataset.json", json.dumps({"kind": "other"}).encode()), "not an insight dataset"),
        (lambda p: corrupt(p, "frames.parquet", b"garbage"), "corrupt"),
        (lambda p: (p / "objects.parquet").unlink(), "missing"),
    ],
)
def test_foreign_or_corrupt_datasets_are_refused(tmp_path, damage, message):
    write_tiny(tmp_path / "ds")
    damage(tmp_path / "ds")
    with pytest.raises(InsightError, match=message):
        load_dataset(tmp_path / "ds")


def test_other_schema_version_is_refused(tmp_path):
    write_tiny(tmp_path / "ds")
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(InsightError, match="schema version"):
        load_dataset(tmp_path / "ds")


def test_missing_dataset(tmp_path):
    with pytest.raises(InsightError, match="insight segment"):
        load_dataset(tmp_path / "nothing")


def test_failed_write_leaves_nothing_behind(tmp_path):
    write_tiny(tmp_path / "ds")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "ds", {"game": "Catch"}) as writer:
            writer.add_frame(0, 0, b"png", np.zeros((84, 84), np.uint8), 0, 0.0)
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert load_dataset(tmp_path / "ds").meta["counts"]["frames"] == 6  # the old dataset is intact


def edit_meta(path, change):
    meta = json.loads((path / "dataset.json").read_text())
    change(meta)
    (path / "dataset.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda meta: meta.pop("counts"), "lacks 'counts'"),
        (lambda meta: meta.pop("objects"), "lacks 'objects'"),
        (lambda meta: meta.pop("fingerprint"), "lacks 'fingerprint'"),
        (lambda meta: meta.pop("game"), "lacks 'game'"),
        (lambda meta: meta["counts"].pop("train_frames"), "counts lacks a whole number 'train_frames'"),
        (lambda meta: meta["objects"][0].pop("track_id"), "lacks a whole number track_id"),
        (lambda meta: meta["objects"][0].update(name="ﬁsh"), "'ﬁsh' is not an ASCII identifier"),
        (lambda meta: meta["objects"][0].update(name="paddle"), "two objects are named 'paddle'"),
        (lambda meta: meta.update(schema_version="1"), "schema_version '1', not a whole number"),
    ],
)
def test_a_dataset_json_missing_or_mistyping_a_field_names_it(tmp_path, change, message):
    write_tiny(tmp_path / "ds")
    edit_meta(tmp_path / "ds", change)
    with pytest.raises(InsightError, match=re.escape(message)):
        load_dataset(tmp_path / "ds")


def test_a_gray_frame_of_the_wrong_length_is_refused(tmp_path):
    write_tiny(tmp_path / "ds")
    frames = pq.read_table(tmp_path / "ds" / "frames.parquet")
    gray = frames.column("gray").to_pylist()
    gray[2] = gray[2][:-1]
    pq.write_table(
        frames.set_column(frames.schema.get_field_index("gray"), "gray", pa.array(gray, pa.binary())),
        tmp_path / "ds" / "frames.parquet",
    )
    with pytest.raises(InsightError, match="a gray frame is not 84x84"):
        load_dataset(tmp_path / "ds")


def write_frames(path, count):
    rng = np.random.default_rng(0)
    with DatasetWriter(path, {"game": "Catch"}) as writer:
        for index in range(count):
            gray = rng.integers(0, 255, (84, 84), np.uint8)
            frame_id = writer.add_frame(index // 100, index % 100, rng.bytes(4000), gray, 0, 0.0)
            writer.add_objects(frame_id, [0], ["ball"], np.array([[0, 0, 4, 4]]), [16], [[1, 2, 3]], (84, 84))
        writer.finish([{"track_id": 0, "name": "ball", "frames_seen": count}])


def test_frames_go_to_disk_in_chunks_so_memory_stays_flat(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_module, "CHUNK_FRAMES", 64)
    write_frames(tmp_path / "warm", 100)  # imports allocate too
    peaks = []
    for count in (500, 2000):
        tracemalloc.start()
        write_frames(tmp_path / f"ds{count}", count)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.5 * peaks[0]  # four times the frames (17 MB more of them), about the same peak
    dataset = load_dataset(tmp_path / "ds2000")
    assert pq.ParquetFile(tmp_path / "ds2000" / "frames.parquet").num_row_groups == 2000 // 64 + 1
    assert dataset.frames.column("frame_id").to_pylist() == list(range(2000))
    assert dataset.frames.column("split").to_pylist() == ["train"] * 1600 + ["test"] * 400
    assert dataset.objects.column("frame_id").to_pylist() == list(range(2000))


def test_an_earlier_dataset_or_an_empty_directory_is_replaced(tmp_path):
    write_tiny(tmp_path / "ds")
    write_tiny(tmp_path / "ds", frames=3, episodes=(0, 1, 2))
    (tmp_path / "empty").mkdir()
    write_tiny(tmp_path / "empty")
    assert load_dataset(tmp_path / "ds").meta["counts"]["frames"] == 3 and load_dataset(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "empty"]


def precious(file):
    file.parent.mkdir(exist_ok=True)
    file.write_text("precious")
    return file


@pytest.mark.parametrize(
    "make",
    [
        lambda out: precious(out),
        lambda out: precious(out / "thesis.txt"),
        lambda out: (write_tiny(out), precious(out / "notes.txt"))[1],
    ],
)
def test_anything_else_is_replaced_only_when_asked(tmp_path, make):
    file = make(tmp_path / "out")
    with pytest.raises(InsightError, match="would delete it.*--force"):
        write_tiny(tmp_path / "out")
    assert file.read_text() == "precious"
    with DatasetWriter(tmp_path / "out", {"game": "Catch"}, replace=True) as writer:
        writer.add_frame(0, 0, b"png", np.zeros((84, 84), np.uint8), 0, 0.0)
        writer.finish([])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset.json", "frames.parquet", "objects.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden .out.old-<pid> left behind


def test_leftovers_of_killed_runs_are_removed_and_a_live_runs_kept(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, live = finished.pid, os.getpid()
    for name in (
        f".ds.tmp-{dead}-abcd1234",
        ".ds.tmp-old12345",
        f".ds.old-{dead}",
        f".ds.tmp-{live}-abcd1234",
        ".ds.tmp-mine.txt",
        ".other.tmp-abcd1234",
    ):
        (tmp_path / name).mkdir()
    write_tiny(tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".ds.tmp-{live}-abcd1234",
        ".ds.tmp-mine.txt",
        ".other.tmp-abcd1234",
        "ds",
    ]
