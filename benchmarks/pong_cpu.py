"""The cpu preset end to end: `insight pipeline --game Pong --preset cpu --device cpu`, then a
summary of what it measured, printed and written to data/<Game>/cpu_results.json.

    .venv/bin/python benchmarks/pong_cpu.py [--game Pong] [--every 250000] [--summary-only]

Long (about 70-90 minutes on 2 cores for Pong's 5M env steps); resumable like the pipeline itself:
run it again after an interruption and the finished stages are skipped, the train resumes.
--summary-only reads an existing run without running anything. The JSON holds the wall time of
each stage, the training SPS, the training return and the EQL actor's evaluation return at
every --every env steps, the DAgger phase's evaluations, the terms and fidelity of the
equations and the three actors' returns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq


def at_checkpoints(rows: list[dict], every: int) -> list[dict]:
    """The last logged training and evaluation return at or before each multiple of `every`."""
    points, last_step = [], rows[-1]["step"] if rows else 0
    for mark in [*range(every, last_step + 1, every), *([last_step] if last_step % every else [])]:
        before = [row for row in rows if row["step"] <= mark]
        point = {"env_steps": mark}
        for key, name in (
            ("train/episode_return", "train_return"),
            ("train/eql_episode_return", "eql_dagger_return"),  # the EQL actor playing in the DAgger phase
            ("eval/eql_return", "eql_eval_return"),
        ):
            values = [row[key] for row in before if row.get(key) is not None]
            point[name] = round(values[-1], 2) if values else None
        points.append(point)
    return points


def dagger_evaluations(rows: list[dict]) -> list[dict]:
    """The EQL actor's evaluations in the DAgger phase (from its first logged update on): the
    candidates the run kept the best of."""
    phase = [row for row in rows if row.get("losses/dagger_memory") is not None]
    start = phase[0]["step"] if phase else float("inf")
    return [
        {"env_steps": row["step"], "eql_eval_return": round(row["eval/eql_return"], 2)}
        for row in rows
        if row["step"] >= start and row.get("eval/eql_return") is not None
    ]


def summary(game: str, every: int) -> dict:
    root = Path("data") / game
    run_dir = root / "runs" / "cpu"
    manifest = json.loads((root / "pipeline.json").read_text())
    train = json.loads((run_dir / "result.json").read_text())
    policy = json.loads((run_dir / "policy.json").read_text())
    rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    actors = {
        actor: json.loads((run_dir / "evaluation" / f"{actor}.json").read_text())
        for actor in ("neural", "eql", "symbolic")
    }
    return {
        "game": game,
        "stage_seconds": manifest.get("seconds", {}),
        "train_env_steps": train["global_step"],
        "train_sps": round(train["steps_per_second"]),
        "curve": at_checkpoints(rows, every),
        "dagger_evaluations": dagger_evaluations(rows),
        "dagger_best_update": train.get("dagger_best_update"),
        "terms": policy["terms"],
        "fidelity": policy["fidelity"],
        "returns": {
            actor: {key: result[key] for key in ("mean", "std", "episodes")} for actor, result in actors.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--every", type=int, default=250_000, help="env steps between curve points")
    parser.add_argument("--summary-only", action="store_true", help="summarise an existing run; run nothing")
    args = parser.parse_args()
    if not args.summary_only:
        from insight_cli.pipeline import PipelineConfig, run

        run(PipelineConfig(game=args.game, preset="cpu", device="cpu"))
    result = summary(args.game, args.every)
    out = Path("data") / args.game / "cpu_results.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
