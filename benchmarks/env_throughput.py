"""Env steps/s of the ALE C++ vector env (our fast path) vs gymnasium SyncVectorEnv with the
standard Atari wrappers, same game, same number of envs, random actions.

    .venv/bin/python benchmarks/env_throughput.py [--game Pong] [--num-envs 8] [--steps 1000] [--repeats 5]

Repeats alternate between the two so machine noise hits both alike; prints the medians and
their ratio (target: fast path >= 2x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from insight_cli.envs import make_vector_env


def steps_per_second(env, actions: np.ndarray) -> float:
    env.reset()
    start = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return actions.size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000, help="vector steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    envs = {
        backend: make_vector_env(args.game, args.num_envs, seed=0, backend=backend) for backend in ("ale", "gymnasium")
    }
    rng = np.random.default_rng(0)
    actions = rng.integers(0, len(envs["ale"].action_meanings), size=(args.steps, args.num_envs))
    samples: dict[str, list[float]] = {backend: [] for backend in envs}
    for _ in range(args.repeats):
        for backend, env in envs.items():
            samples[backend].append(steps_per_second(env, actions))
    medians = {backend: statistics.median(values) for backend, values in samples.items()}
    print(f"{args.game}, {args.num_envs} envs, {args.steps} steps x {args.repeats} repeats (median env steps/s)")
    print(f"  fast path (ale_py AtariVectorEnv):      {medians['ale']:8.0f}")
    print(f"  baseline (gymnasium SyncVectorEnv):     {medians['gymnasium']:8.0f}")
    print(f"  ratio:                                  {medians['ale'] / medians['gymnasium']:8.2f}x")


if __name__ == "__main__":
    main()
