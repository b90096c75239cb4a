import cv2
import numpy as np
import pytest

from insight_cli.envs import make_frame_source, make_vector_env
from insight_cli.envs.catch import BALLS_PER_EPISODE, PADDLE_WIDTH
from insight_cli.errors import InsightError, UsageError


def random_actions(rng, env, steps):
    return rng.integers(0, len(env.action_meanings), size=(steps, env.num_envs))


@pytest.mark.parametrize(
    "game,backend,mode",
    [("Pong", "ale", "train"), ("Pong", "gymnasium", "train"), ("Breakout", "ale", "eval"), ("Catch", "auto", "train")],
)
def test_observations_are_stacked_84x84_uint8(game, backend, mode, rng):
    env = make_vector_env(game, num_envs=3, seed=0, mode=mode, backend=backend)
    obs = env.reset()
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    # Frames before the first one are zero padding; the current frame shows the game.
    assert not obs[:, :3].any() and obs[:, 3].any()
    for actions in random_actions(rng, env, 5):
        result = env.step(actions)
    assert result.obs.shape == (3, 4, 84, 84) and result.obs.dtype == np.uint8
    assert result.reward.shape == (3,) and result.reward.dtype == np.float32
    assert result.terminated.dtype == bool and result.truncated.dtype == bool
    # The stack shifts by one frame per step.
    before = env.step(np.zeros(3, dtype=int)).obs
    after = env.step(np.zeros(3, dtype=int)).obs
    np.testing.assert_array_equal(before[:, 1:], after[:, :3])
    env.close()


@pytest.mark.parametrize("game,backend", [("Pong", "ale"), ("Pong", "gymnasium"), ("Catch", "auto")])
def test_same_seed_same_actions_same_observations(game, backend, rng):
    actions = rng.integers(0, 3, size=(40, 2))
    runs = []
    for seed in (7, 7, 8):
        env = make_vector_env(game, num_envs=2, seed=seed, backend=backend)
        observations = [env.reset()] + [env.step(a).obs for a in actions]
        runs.append(np.stack(observations))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("backend", ["ale", "gymnasium"])
@pytest.mark.parametrize("sticky_mode", ["eval", "imitate"])
def test_eval_and_imitate_modes_sometimes_repeat_the_last_action_and_stay_reproducible(backend, sticky_mode):
    """Sticky actions: the same seed and actions give other frames in eval and imitate (train's
    DAgger phase) mode than in train mode (which never repeats an action), and the same frames
    on every try."""
    actions = [np.full(2, 2 + (t // 3) % 2) for t in range(60)]  # UP and DOWN in turns of 3 steps
    runs = {}
    for mode in ("train", sticky_mode, "again"):
        env = make_vector_env(
            "Pong", num_envs=2, seed=3, mode=sticky_mode if mode == "again" else mode, backend=backend
        )
        runs[mode] = np.stack([env.reset()] + [env.step(a).obs for a in actions])
        env.close()
    assert not np.array_equal(runs["train"], runs[sticky_mode])
    np.testing.assert_array_equal(runs[sticky_mode], runs["again"])


@pytest.mark.parametrize("game,steps", [("Pong", 1200), ("Breakout", 300), ("Catch", 300)])
def test_frame_source_stack_equals_training_observation(game, steps, rng):
    """One preprocessing truth: the dataset's 84x84 stack is what the training env shows."""
    env = make_vector_env(game, num_envs=4, seed=3)
    source = make_frame_source(game, seed=3)
    obs, frame = env.reset(), source.reset()
    np.testing.assert_array_equal(frame.stack, obs[0])
    episodes_ended = 0
    for actions in random_actions(rng, env, steps):
        result = env.step(actions)
        frame, reward, done = source.step(int(actions[0]))
        np.testing.assert_array_equal(frame.stack, result.obs[0])
        assert reward == result.reward[0] and done == (result.terminated[0] or result.truncated[0])
        episodes_ended += done
    assert episodes_ended >= 1, "the comparison should cross an episode boundary"


def test_frame_source_rgb_is_the_current_screen(rng):
    source = make_frame_source("Pong", seed=0)
    frame = source.reset()
    assert frame.rgb.shape == (210, 160, 3) and frame.rgb.dtype == np.uint8
    distance_now, distance_before = [], []
    for _ in range(60):
        frame, _, _ = source.step(int(rng.integers(6)))
        gray = cv2.resize(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA)
        distance_now.append(np.abs(gray.astype(int) - frame.stack[-1]).mean())
        distance_before.append(np.abs(gray.astype(int) - frame.stack[-2]).mean())
    # Close to the newest frame of the stack (grey levels differ slightly), far from the one before.
    assert max(distance_now) < 0.5 and sum(distance_now) < sum(distance_before) / 2


def test_catch_rgb_matches_stack():
    source = make_frame_source("Catch", seed=0)
    frame = source.reset()
    assert frame.rgb.shape == (84, 84, 3)
    np.testing.assert_array_equal(frame.rgb.any(axis=-1), frame.stack[-1] > 0)


def test_train_mode_clips_rewards_and_eval_mode_keeps_scores(rng):
    """SpaceInvaders pays 5-30 points per alien: clipped to 1 in training, raw in evaluation."""
    rewards = {}
    for mode in ("train", "eval"):
        env = make_vector_env("SpaceInvaders", num_envs=4, seed=0, mode=mode)
        env.reset()
        rewards[mode] = np.concatenate([env.step(a).reward for a in random_actions(rng, env, 300)])
        env.close()
    assert set(np.unique(rewards["train"])) <= {0.0, 1.0} and rewards["train"].max() == 1.0
    assert rewards["eval"].max() >= 5


def test_train_mode_ends_episodes_on_life_loss(rng):
    lengths = {}
    for mode in ("train", "eval"):
        env = make_vector_env("Breakout", num_envs=2, seed=0, mode=mode)
        env.reset()
        for step, actions in enumerate(random_actions(rng, env, 300)):
            if env.step(actions).terminated.any():
                break
        lengths[mode] = step
    assert lengths["train"] < 100  # the first lost life, not game over
    assert lengths["eval"] > lengths["train"]


def catch_policy(obs):
    """Move the paddle toward the ball, reading both from the newest frame."""
    frame = obs[:, -1]
    ball_rows = frame[:, :78]
    ball_x = np.array([np.nonzero(f.any(axis=0))[0].mean() if f.any() else 42 for f in ball_rows])
    paddle_x = np.array([np.nonzero(f[80:].any(axis=0))[0].mean() for f in frame])
    return np.where(ball_x > paddle_x + 1, 1, np.where(ball_x < paddle_x - 1, 2, 0))


def play_catch(policy, rng, num_envs=4):
    env = make_vector_env("Catch", num_envs=num_envs, seed=0)
    obs = env.reset()
    returns, finished = np.zeros(num_envs), []
    for step in range(400):
        actions = policy(obs) if policy else rng.integers(0, 3, num_envs)
        result = env.step(actions)
        obs, returns = result.obs, returns + result.reward
        finished += list(returns[result.terminated])
        returns[result.terminated] = 0
    return finished


def test_catch_rewards_optimal_play_and_punishes_random_play(rng):
    optimal = play_catch(catch_policy, rng)
    assert optimal and all(r == BALLS_PER_EPISODE for r in optimal)
    random = play_catch(None, rng)
    assert random and np.mean(random) < 0


def test_catch_episode_is_a_few_hundred_steps():
    env = make_vector_env("Catch", num_envs=1, seed=0)
    env.reset()
    steps = next(s for s in range(1, 1000) if env.step(np.zeros(1, dtype=int)).terminated[0])
    assert 150 <= steps <= 400
    assert PADDLE_WIDTH < 84


@pytest.mark.parametrize("num_envs", [0, -2, 1.5, True])
def test_invalid_num_envs_is_a_usage_error(num_envs):
    with pytest.raises(UsageError, match="num_envs"):
        make_vector_env("Pong", num_envs=num_envs)


def test_unknown_game_mode_or_backend_fail_clearly():
    with pytest.raises(InsightError, match="did you mean Pong"):
        make_vector_env("Pongg", num_envs=1)
    with pytest.raises(UsageError, match="mode"):
        make_vector_env("Pong", num_envs=1, mode="test")
    with pytest.raises(UsageError, match="backend"):
        make_vector_env("Pong", num_envs=1, backend="envpool")
