"""MetaDrive for real, offline, through the top-down view (its 3-D assets are not installed here)."""

import numpy as np
import pytest

from insight_cli.envs import make_frame_source, make_vector_env
from insight_cli.envs.metadrive import STATE_SIZE, asset_status
from insight_cli.errors import InsightError

pytestmark = pytest.mark.skipif(asset_status() == "not-installed", reason="metadrive-simulator is not installed")


@pytest.fixture(scope="module")
def env():
    env = make_vector_env("MetaDrive", num_envs=2, seed=5)
    yield env
    env.close()


def test_observations_ego_state_and_continuous_actions(env):
    obs = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :3].any() and obs[:, 3].any()  # zero padding before the first frame, as for every game
    assert env.ego_state.shape == (2, STATE_SIZE) and ((env.ego_state >= 0) & (env.ego_state <= 1)).all()
    for _ in range(20):  # drive forward, steering full left in env 0 and full right in env 1
        result = env.step(np.array([[1.0, 0.6], [-1.0, 0.6]]))
    assert result.reward.dtype == np.float32 and result.terminated.dtype == bool and env.arrived.dtype == bool
    moved = result.obs[:, 3].astype(int) - obs[:, 3].astype(int)
    assert np.abs(moved).sum(axis=(1, 2)).min() > 0  # the view follows the car
    assert not np.array_equal(result.obs[0], result.obs[1])  # steering matters


def test_same_seed_same_views_and_the_frame_source_sees_what_the_env_sees(env):
    first = env.reset(seed=11)
    again = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)
    source = make_frame_source("MetaDrive", seed=11, expert=True)
    try:
        frame = source.reset()
        np.testing.assert_array_equal(frame.stack, first[0])  # one preprocessing truth
        assert frame.rgb.shape == (84, 84, 3)
        ego = [obj for obj in source.objects if obj.name == "ego"]
        assert len(ego) == 1
        x0, y0, x1, y1 = ego[0].box
        assert abs((x0 + x1) / 2 - 42) < 1 and abs((y0 + y1) / 2 - 42) < 1  # the ego sits at the centre, heading up
        assert y1 - y0 > x1 - x0
        for _ in range(30):  # MetaDrive's expert drives when no action is given
            frame, reward, done = source.step(None)
        assert np.abs(source.last_action).sum() > 0 and reward > 0
    finally:
        source.close()


def test_a_dead_worker_is_a_one_line_error():
    env = make_vector_env("MetaDrive", num_envs=1, seed=0)
    try:
        env.reset()
        env._processes[0].kill()
        env._processes[0].join()
        with pytest.raises(InsightError, match="worker"):
            env.step(np.zeros((1, 2)))
    finally:
        env.close()
