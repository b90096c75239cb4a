"""The DAgger phase again, on a trained run's fixed neural actor, with the student swapped: what
limits the EQL actor on Pong, its capacity, its penalty or the phase itself?

    .venv/bin/python benchmarks/dagger_student.py data/Pong/runs/cpu/run.ckpt \
        [--students eql eql-noreg mlp] [--updates 342] [--out data/Pong/dagger_student.json]

Each student starts from a fresh initialisation and runs the cpu preset's DAgger phase (8 envs x
128 steps per update, `train.dagger.dagger_update`, the rate annealed to 0, 4-game evaluations
`EVALUATIONS` times, the best kept) against the run's neural actor, which stays as it is:
    eql        the run's EQL actor (its layers and funcs) under the sparsity weight --reg-weight
    eql-noreg  the same EQL actor without the penalty
    mlp        a 2 x 256 ReLU network on the same coordinates: how well the coordinates alone
               can carry the teacher's play
Printed and written per student: agreement on its own states at the start and the end, the
evaluations, and 10 games of the best and of the last weights; the teacher's 10 games once.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch import nn

from insight_cli.envs import make_vector_env
from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.games import get_game
from insight_cli.train.agent import load_agent
from insight_cli.train.config import TrainConfig
from insight_cli.train.dagger import EVALUATIONS, BestEql, DaggerMemory, dagger_update
from insight_cli.train.eql import INVERSE_TEMPERATURE, EqlActor
from insight_cli.train.ppo import PpoSettings
from insight_cli.train.run_state import EnvCursor
from insight_cli.train.stage import Plan, _rollout_buffer, collect_rollout, schedule

NUM_ENVS, NUM_STEPS, LR = 8, 128, 2.5e-4  # the cpu preset's


class Mlp(nn.Module):
    """(B, V) coordinates -> (B, A) logits, scaled like the EQL actor's."""

    def __init__(self, n_inputs: int, n_actions: int, width: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_actions)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)) * INVERSE_TEMPERATURE


def games(agent, actor: str, game, count: int, seed: int) -> list[float]:
    return play_episodes(agent_actor(agent, actor), game, count, seed=seed, device=torch.device("cpu")).returns


def run_student(path: Path, student: str, updates: int, seed: int, reg_weight: float) -> dict:
    agent, checkpoint = load_agent(path, torch.device("cpu"))
    game = get_game(checkpoint.meta["game"])
    torch.manual_seed(seed)
    config = agent.config.eql
    agent.eql = Mlp(config.n_inputs, config.n_actions) if student == "mlp" else EqlActor(config)
    reg_weight = reg_weight if student == "eql" else 0.0
    optimizer = torch.optim.Adam(agent.eql.parameters(), lr=LR, eps=1e-5)
    settings = PpoSettings(effects=tuple(int(index) for index in game.effects))
    env = make_vector_env(game, NUM_ENVS, seed=seed, mode="train")
    cursor = EnvCursor.start(env, 0, torch.device("cpu"))
    rollout = _rollout_buffer(TrainConfig(num_envs=NUM_ENVS, num_steps=NUM_STEPS), agent.config, torch.device("cpu"))
    memory, best, generator = DaggerMemory(), BestEql(), torch.Generator().manual_seed(seed)
    every = max(1, updates // EVALUATIONS)
    plan = Plan(NUM_ENVS * NUM_STEPS, updates, 0, updates, every, every)  # a run that is all DAgger phase
    evaluations, agreements, finished = [], [], deque(maxlen=20)
    started = time.perf_counter()
    for update in range(1, updates + 1):
        for group in optimizer.param_groups:
            group["lr"] = schedule(update, plan, LR, reg_weight)[1]  # the phase's annealing, as in training
        perceived = collect_rollout(agent, env, rollout, cursor, finished, "eql", greedy=True, keep_perception=True)
        stats = dagger_update(
            agent, optimizer, rollout, memory, settings, reg_weight, lambda: None, generator, perceived
        )
        agreements.append(stats["agreement"])
        if update % every == 0 or update == updates:
            score = float(np.mean(games(agent, "eql", game, 4, seed=seed + 100_003 * update)))
            evaluations.append({"update": update, "eql_return": score, "agreement": stats["agreement"]})
            best.offer({"eval/eql_return": score}, update, agent.eql)
            print(f"{student} update {update}: 4 games {score:+.2f}, agreement {stats['agreement']:.3f}", flush=True)
    env.close()
    last = games(agent, "eql", game, 10, seed=seed + 7)
    best.restore(agent.eql)
    kept = games(agent, "eql", game, 10, seed=seed + 7)
    return {
        "student": student,
        "reg_weight": reg_weight,
        "updates": updates,
        "seconds": round(time.perf_counter() - started, 1),
        "agreement_first_10": round(float(np.mean(agreements[:10])), 3),
        "agreement_last_10": round(float(np.mean(agreements[-10:])), 3),
        "evaluations": evaluations,
        "best_update": best.update,
        "best_10_games": round(float(np.mean(kept)), 2),
        "best_10_games_std": round(float(np.std(kept)), 2),
        "last_10_games": round(float(np.mean(last)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a trained run's checkpoint (its neural actor is the teacher)")
    parser.add_argument(
        "--students", nargs="+", default=["eql", "eql-noreg", "mlp"], choices=["eql", "eql-noreg", "mlp"]
    )
    parser.add_argument("--updates", type=int, default=342, help="DAgger updates (the cpu preset's phase: 342)")
    parser.add_argument("--reg-weight", type=float, default=1e-4, help="the eql student's (the cpu preset's: 1e-4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON to write (default: next to the run)")
    args = parser.parse_args()
    out = args.out or args.run.parent / "dagger_student.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    if "teacher_10_games" not in results:
        agent, checkpoint = load_agent(args.run, torch.device("cpu"))
        returns = games(agent, "neural", get_game(checkpoint.meta["game"]), 10, seed=args.seed + 7)
        results["teacher_10_games"] = round(float(np.mean(returns)), 2)
        print(f"teacher (neural actor), 10 games: {results['teacher_10_games']:+.2f}", flush=True)
    for student in args.students:
        if student in results.get("students", {}):
            continue  # resumable: a finished student is kept
        result = run_student(args.run, student, args.updates, args.seed, args.reg_weight)
        results.setdefault("students", {})[student] = result
        out.write_text(json.dumps(results, indent=2))
        print(
            f"{student}: agreement {result['agreement_first_10']:.3f} -> {result['agreement_last_10']:.3f}, "
            f"best (update {result['best_update']}) {result['best_10_games']:+.2f} over 10 games, "
            f"last {result['last_10_games']:+.2f}, {result['seconds']:.0f} s",
            flush=True,
        )
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
