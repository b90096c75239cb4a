"""Where an `insight train` update spends its time: wall seconds of the rollout's forward passes,
the env steps, the PPO update, evaluation and checkpoint saves, from timers around each.

    .venv/bin/python benchmarks/train_profile.py [--game Pong] [--updates 10] [--eval-episodes 0]

Runs in the current directory's data/<Game>/ (a dataset and perception.ckpt from `insight
segment` and `insight pretrain`, e.g. the cpu preset's), with the cpu preset's train settings
(frozen CNN, 8 envs x 128 steps). What the timers do not cover is the loop's own work:
sampling, copies, logging.
"""

from __future__ import annotations

import argparse
import collections
import time

import torch

from insight_cli.envs import atari
from insight_cli.pipeline import PRESETS
from insight_cli.train import agent as agent_module
from insight_cli.train import run_state, stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=0)
    args = parser.parse_args()
    totals: collections.Counter[str] = collections.Counter()

    def timed(name, function):
        def wrapper(*positional, **keywords):
            started = time.perf_counter()
            try:
                return function(*positional, **keywords)
            finally:
                totals[name] += time.perf_counter() - started

        return wrapper

    atari._GymVectorAdapter.step = timed("env steps", atari._GymVectorAdapter.step)
    agent_module.Agent.forward = timed("forward passes (perception + heads)", agent_module.Agent.forward)
    stage.ppo_update = timed("PPO update", stage.ppo_update)
    stage._evaluate = timed("evaluation", stage._evaluate)
    run_state.save_checkpoint = timed("checkpoint saves", run_state.save_checkpoint)
    preset = PRESETS["cpu"]
    batch = preset.num_envs * preset.num_steps
    result = stage.run(
        stage.TrainConfig(
            game=args.game,
            load_cnn=True,
            freeze_cnn=preset.freeze_cnn,
            total_steps=batch * args.updates,
            num_envs=preset.num_envs,
            num_steps=preset.num_steps,
            eval_episodes=args.eval_episodes,
            eval_every=1.0,
            run_name="profile",
            force=True,
            device="cpu",
        )
    )
    loop = result.global_step / result.steps_per_second
    print(
        f"{args.game}: {result.global_step:,} env steps, {result.steps_per_second:,.0f} env steps/s in the loop "
        f"({loop:.1f} s), {torch.get_num_threads()} threads"
    )
    for name, seconds in totals.most_common():
        print(f"  {name:40s} {seconds:7.2f} s  {seconds / loop:6.1%} of the loop")
    print(f"  {'the rest (sampling, copies, logging)':40s} {loop - sum(totals.values()):7.2f} s")


if __name__ == "__main__":
    main()
