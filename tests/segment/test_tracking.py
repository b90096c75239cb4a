import numpy as np

from insight_cli.games import GameSpec, ObjectSpec
from insight_cli.segment.detections import Detections
from insight_cli.segment.tracking import Tracker

RED, GREEN, BLUE = (200, 72, 72), (92, 186, 92), (50, 50, 200)
GAME = GameSpec(
    name="Toy",
    task="test",
    actions={"NOOP": "nothing"},
    objects=(
        ObjectSpec("ball", "the ball", colors=(RED,), size=((1, 1), (6, 6))),
        ObjectSpec("alien", "aliens", colors=(GREEN,), size=((1, 1), (8, 8)), max_count=10),
    ),
)
SHAPE = (100, 100)


def detections(*objects):
    """objects: (x, y, colour) with 4x4 boxes at x, y."""
    boxes = [(x, y, x + 4, y + 4) for x, y, _ in objects]
    colors = [color for _, _, color in objects]
    return Detections(
        np.array(boxes, np.int32).reshape(-1, 4),
        np.full(len(objects), 16, np.int32),
        np.array(colors, np.uint8).reshape(-1, 3),
    )


def test_ids_persist_through_motion():
    tracker = Tracker(GAME)
    first, names = tracker.update(detections((10, 10, GREEN), (60, 10, GREEN), (40, 50, RED)), SHAPE)
    assert names == ["alien1", "alien2", "ball"]
    for step in range(1, 7):
        ids, _ = tracker.update(
            detections((10 + 3 * step, 10, GREEN), (60 - 3 * step, 10, GREEN), (40, 50 - 4 * step, RED)), SHAPE
        )
        np.testing.assert_array_equal(ids, first)


def test_crossing_objects_keep_their_ids():
    """Two aliens swap sides, passing close by: matching follows motion, not order."""
    tracker = Tracker(GAME)
    left, right = tracker.update(detections((20, 40, GREEN), (60, 40, GREEN)), SHAPE)[0]
    for step in range(1, 9):
        x_left, x_right = 20 + 5 * step, 60 - 5 * step
        ids, _ = tracker.update(detections((x_right, 44, GREEN), (x_left, 40, GREEN)), SHAPE)  # listed in swapped order
        assert ids.tolist() == [right, left]


def test_new_objects_get_new_ids_and_retired_ids_are_not_reused():
    tracker = Tracker(GAME, max_missing=2)
    (alien,), _ = tracker.update(detections((10, 10, GREEN)), SHAPE)
    for _ in range(4):  # gone long enough to retire
        tracker.update(detections(), SHAPE)
    (again,), names = tracker.update(detections((10, 10, GREEN)), SHAPE)
    assert again != alien and names == ["alien2"]
    (blue,), names = tracker.update(detections((80, 80, BLUE)), SHAPE)
    assert blue not in (alien, again) and names == [f"obj{blue}"]


def test_short_gaps_keep_the_id():
    tracker = Tracker(GAME, max_missing=5)
    (alien,), _ = tracker.update(detections((10, 10, GREEN)), SHAPE)
    tracker.update(detections(), SHAPE)  # a flickering sprite, missing for a frame
    (same,), _ = tracker.update(detections((12, 10, GREEN)), SHAPE)
    assert same == alien


def test_one_of_a_kind_object_keeps_its_id_wherever_it_reappears():
    tracker = Tracker(GAME, max_missing=1)
    (ball,), _ = tracker.update(detections((90, 90, RED)), SHAPE)
    for _ in range(5):
        tracker.update(detections(), SHAPE)
    (again,), names = tracker.update(detections((5, 5, RED)), SHAPE)
    assert again == ball and names == ["ball"]


def test_name_overrides_apply():
    tracker = Tracker(GAME, overrides={"ball": "puck", "obj1": "bullet"})
    _, names = tracker.update(detections((80, 80, BLUE), (10, 10, RED)), SHAPE)  # the ball is tracked first
    assert names == ["bullet", "puck"]
    assert [entry["name"] for entry in tracker.catalogue(1)] == ["puck", "bullet"]
