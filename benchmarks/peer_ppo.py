"""insight's cpu preset against a peer: stable-baselines3's PPO (CnnPolicy, its Atari defaults)
on the same game, the same machine and the same env steps, in one run.

    .venv/bin/pip install -e '.[bench]'   # stable-baselines3: a benchmark extra, never a dependency
    .venv/bin/python benchmarks/peer_ppo.py [--game Pong] [--steps 200000] [--pretrain-epochs 20] \
        [--out data/peer_ppo.json]

Both learners step the same ALE C++ vector env with the same training rules (no sticky
actions, up to 30 no-ops, frame-skip 4 with max-pool, 84x84 grayscale, a stack of 4, episodic
life, FIRE on reset, clipped rewards): SB3 gets it through a VecEnv adapter, so only the
learners differ. SB3's Atari defaults (rl-baselines3-zoo): 8 envs x 128 steps, 4 epochs,
batch 256, lr 2.5e-4 and clip 0.1 annealed linearly, ent 0.01, vf 0.5. insight trains with the
cpu preset's settings on a perception CNN pretrained here first (its time is reported apart).

Prints env steps/s of both, their ratio, and the mean return of the last 20 training episodes
at equal env steps and at equal wall time; writes the curves to --out.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from insight_cli.envs import make_vector_env
from insight_cli.games import get_game
from insight_cli.pipeline import PRESETS

RECENT = 20  # training episodes a return is the mean of


class _SharedEnv:
    """stable-baselines3's VecEnv over insight's vector env (built lazily: SB3 is an extra)."""

    @staticmethod
    def build(game: str, num_envs: int, seed: int):
        import gymnasium as gym
        from stable_baselines3.common.vec_env import VecEnv

        class SharedEnv(VecEnv):
            def __init__(self):
                self.env = make_vector_env(get_game(game), num_envs, seed=seed, mode="train")
                space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
                super().__init__(num_envs, space, gym.spaces.Discrete(len(self.env.action_meanings)))
                self.returns, self.curve, self.steps, self.started = np.zeros(num_envs), [], 0, time.perf_counter()
                self.finished: list[float] = []

            def reset(self):
                return self.env.reset()

            def step_async(self, actions):
                self._actions = actions

            def step_wait(self):
                result = self.env.step(np.asarray(self._actions))
                done = result.terminated | result.truncated
                self.steps += self.num_envs
                self.returns += result.reward
                for index in np.flatnonzero(done):
                    self.finished.append(float(self.returns[index]))
                    self.returns[index] = 0.0
                    self.curve.append(
                        (self.steps, time.perf_counter() - self.started, float(np.mean(self.finished[-RECENT:])))
                    )
                infos = [{} for _ in range(self.num_envs)]
                return result.obs, result.reward, done, infos

            def close(self):
                self.env.close()

            def get_attr(self, name, indices=None):
                return [None] * self.num_envs

            def set_attr(self, name, value, indices=None):
                pass

            def env_method(self, name, *args, indices=None, **kwargs):
                return [None] * self.num_envs

            def env_is_wrapped(self, wrapper_class, indices=None):
                return [False] * self.num_envs

        return SharedEnv()


def sb3(game: str, steps: int, seed: int) -> dict:
    from stable_baselines3 import PPO

    env = _SharedEnv.build(game, 8, seed)

    def linear(start):
        return lambda progress_left: progress_left * start

    model = PPO(
        "CnnPolicy",
        env,
        n_steps=128,
        n_epochs=4,
        batch_size=256,
        learning_rate=linear(2.5e-4),
        clip_range=linear(0.1),
        ent_coef=0.01,
        vf_coef=0.5,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    started = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - started
    env.close()
    return {"steps": env.steps, "seconds": seconds, "sps": env.steps / seconds, "curve": env.curve}


def insight(game: str, steps: int, seed: int, root: Path, epochs: int) -> dict:
    import pyarrow.parquet as pq

    from insight_cli.pretrain.stage import PretrainConfig
    from insight_cli.pretrain.stage import run as pretrain
    from insight_cli.segment.stage import SegmentConfig
    from insight_cli.segment.stage import run as segment
    from insight_cli.train.stage import TrainConfig
    from insight_cli.train.stage import run as train

    preset = PRESETS["cpu"]
    started = time.perf_counter()
    segment(SegmentConfig(game=game, frames=preset.frames, out=root / "dataset", seed=seed))
    pretrain(
        PretrainConfig(
            game=game,
            dataset=root / "dataset",
            out=root / "perception.ckpt",
            epochs=epochs,
            hidden=preset.hidden,
            encoder=preset.encoder,
            min_seen=preset.min_seen,
            device="cpu",
            seed=seed,
        )
    )
    perception_seconds = time.perf_counter() - started
    config = TrainConfig(
        game=game,
        load_cnn=True,
        freeze_cnn=preset.freeze_cnn,
        perception=root / "perception.ckpt",
        dataset=root / "dataset",
        runs_dir=root / "runs",
        run_name="peer",
        total_steps=steps,
        num_envs=preset.num_envs,
        num_steps=preset.num_steps,
        eval_episodes=0,
        eval_every=1.0,
        device="cpu",
        seed=seed,
    )
    result = train(config)
    rows = pq.read_table(root / "runs" / "peer" / "metrics.parquet").to_pylist()
    curve = [
        (row["step"], row["step"] / row["charts/sps"], row["train/episode_return"])
        for row in rows
        if row.get("train/episode_return") is not None
    ]
    return {
        "steps": result.global_step,
        "seconds": result.global_step / result.steps_per_second,
        "sps": result.steps_per_second,
        "perception_seconds": perception_seconds,
        "curve": curve,
    }


def at(curve: list, column: int, value: float) -> float | None:
    """The mean recent return where `column` (0: env steps, 1: seconds) last was <= value."""
    points = [point[2] for point in curve if point[column] <= value]
    return points[-1] if points else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=PRESETS["cpu"].epochs,
        help="insight's perception epochs (fewer for a quick throughput check)",
    )
    parser.add_argument("--out", type=Path, default=Path("data/peer_ppo.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = insight(args.game, args.steps, args.seed, Path(tmp), args.pretrain_epochs)
    peer = sb3(args.game, args.steps, args.seed)
    wall = min(ours["seconds"], peer["seconds"])
    steps = min(ours["steps"], peer["steps"])

    def shown(value):
        return "n/a (no episode finished)" if value is None else f"{value:+.1f}"

    print(f"{args.game}, {args.steps:,} env steps each, 8 envs (returns: mean of the last {RECENT} training episodes)")
    print(
        f"  insight cpu preset: {ours['sps']:8.0f} env steps/s (+ {ours['perception_seconds']:.0f} s segment+pretrain)"
    )
    print(f"  stable-baselines3:  {peer['sps']:8.0f} env steps/s")
    print(f"  ratio:              {ours['sps'] / peer['sps']:8.2f}x")
    print(
        f"  return at {steps:,} env steps: insight {shown(at(ours['curve'], 0, steps))}, "
        f"SB3 {shown(at(peer['curve'], 0, steps))}"
    )
    print(
        f"  return at {wall:.0f} s of training: insight {shown(at(ours['curve'], 1, wall))}, "
        f"SB3 {shown(at(peer['curve'], 1, wall))}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"game": args.game, "steps": args.steps, "insight": ours, "sb3": peer}, indent=1))


if __name__ == "__main__":
    main()
