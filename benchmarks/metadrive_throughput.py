"""Env steps/s of MetaDrive's vector env (each env in its own process, top-down view rendered
every step) with 1 env and with N envs, random actions: how well the subprocesses use the cores.

    .venv/bin/python benchmarks/metadrive_throughput.py [--num-envs 2] [--steps 200] [--repeats 3]

Repeats alternate between the two; prints the medians and their ratio (at best N on N cores).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from insight_cli.envs import make_vector_env


def steps_per_second(env, steps: int, rng: np.random.Generator) -> float:
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, size=(env.num_envs, 2)) * [0.3, 1.0])  # mild steering: episodes last
    return steps * env.num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    envs = {
        1: make_vector_env("MetaDrive", 1, seed=0),
        args.num_envs: make_vector_env("MetaDrive", args.num_envs, seed=0),
    }
    rates: dict[int, list[float]] = {count: [] for count in envs}
    try:
        for _ in range(args.repeats):
            for count, env in envs.items():
                rates[count].append(steps_per_second(env, args.steps, rng))
    finally:
        for env in envs.values():
            env.close()
    medians = {count: statistics.median(values) for count, values in rates.items()}
    for count, value in medians.items():
        print(f"{count} env(s): {value:,.0f} env steps/s (median of {args.repeats})")
    print(f"{args.num_envs} envs vs 1: {medians[args.num_envs] / medians[1]:.2f}x")


if __name__ == "__main__":
    main()
