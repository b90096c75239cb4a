"""Seconds to turn barely trained EQL actors into equations.

1. The default path of `insight extract-policy` (without its rollouts, which cost what the game
   and the perception CNN cost) on a Pong-sized actor: 19 objects, 152 inputs, six actions,
   default initialisation, on Pong-like states (two paddles, a ball and four other objects move,
   scores and walls stay put): leave out what never moves or is ignored, find the least pruning
   for every budget of the trade-off, refit where pruning falls short.
2. Expanding a barely trained MetaDrive actor (13 objects and 19 ego state values, 123 inputs,
   means not sharpened, tens of thousands of terms): the numpy path against sympy's sparse
   polynomial ring (what extract-policy used before, and still uses for deeper actors).

    .venv/bin/python benchmarks/extract_speed.py [--repeats 3] [--threshold 0.04] [--no-ring]

Repeats alternate; prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from insight_cli.extract_policy import symbolic
from insight_cli.extract_policy.stage import ExtractConfig, candidates, eql_decisions
from insight_cli.extract_policy.symbolic import Interface, States, variables_for
from insight_cli.extract_policy.tradeoff import Judge
from insight_cli.train.eql import EqlActor, EqlConfig

PONG_OBJECTS = (
    ["score_enemy", "score_player", "player", "enemy", "ball"]
    + [f"bird{i}" for i in range(4)]
    + [f"wall{i}" for i in range(10)]
)
PONG_ACTIONS = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
DRIVING_INPUTS = 13 * 8 + 19


def pong_like_states(count: int, seed: int) -> np.ndarray:
    """(N, 152): paddles move up and down, the ball and the birds anywhere, the rest stays put."""
    rng = np.random.default_rng(seed)
    coordinates = np.tile(np.random.default_rng(0).random((1, len(PONG_OBJECTS), 1, 2)), (count, 1, 4, 1))
    coordinates[:, 2:4, :, 1] = rng.random((count, 2, 4))
    coordinates[:, 4:9] = rng.random((count, 5, 4, 2))
    return coordinates.reshape(count, -1)


def default_path(eql: EqlActor) -> tuple[float, dict]:
    """Seconds for the default path's search on one actor, and what it chose."""
    interface = Interface(variables_for(PONG_OBJECTS), PONG_ACTIONS)
    fit, held_out = pong_like_states(4000, 0), pong_like_states(1000, 1)
    start = time.perf_counter()
    judge = Judge(States(held_out, eql_decisions(eql, held_out, False)), None, seed=0)
    _, points, chosen = candidates(
        ExtractConfig(checkpoint=Path("run.ckpt")),
        eql,
        interface,
        States(fit, eql_decisions(eql, fit, False)),
        None,
        judge,
    )
    took = time.perf_counter() - start
    return took, {
        "method": chosen.method,
        "terms": chosen.term_counts,
        "points": len(points),
        "held_out_fidelity": round(judge(chosen)["held_out_fidelity"], 3),
    }


def ring_against_numpy(actor: EqlActor, threshold: float, dense_entries: int) -> tuple[float, list[dict]]:
    symbolic.DENSE_ENTRIES = dense_entries  # 0: too large for numpy, so the ring expands it
    start = time.perf_counter()
    logits = symbolic.expand(actor, DRIVING_INPUTS, threshold)
    return time.perf_counter() - start, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.04, help="pruning of the MetaDrive expansion")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ring", action="store_true", help="skip the (slow) sympy ring expansion")
    args = parser.parse_args()

    torch.manual_seed(0)
    pong = EqlActor(EqlConfig(len(PONG_OBJECTS) * 8, len(PONG_ACTIONS)))
    runs = [default_path(pong) for _ in range(args.repeats)]
    print(
        f"default path, Pong-sized actor (152 inputs): {statistics.median(took for took, _ in runs):.2f} s "
        f"(median of {args.repeats}); chose {runs[0][1]}"
    )

    torch.manual_seed(0)
    driving = EqlActor(EqlConfig(DRIVING_INPUTS, 2, inverse_temperature=1.0))
    bound = symbolic.term_bound(driving, DRIVING_INPUTS, args.threshold)
    print(f"term bound at threshold {args.threshold:g}: {bound:,}")
    default = symbolic.DENSE_ENTRIES
    numpy_times, ring_times = [], []
    for _ in range(args.repeats):
        took, fast = ring_against_numpy(driving, args.threshold, default)
        numpy_times.append(took)
        if not args.no_ring:
            took, slow = ring_against_numpy(driving, args.threshold, 0)
            ring_times.append(took)
            assert [len(logit) for logit in fast] == [len(logit) for logit in slow], "the two expansions disagree"
    symbolic.DENSE_ENTRIES = default
    kept = [sum(abs(c) >= args.threshold for c in logit.values()) for logit in fast]
    print(f"MetaDrive expansion: terms per action {[len(logit) for logit in fast]}, kept (>= threshold) {kept}")
    line = f"numpy {statistics.median(numpy_times):.2f} s"
    if ring_times:
        line += (
            f", sympy ring {statistics.median(ring_times):.2f} s: "
            f"{statistics.median(ring_times) / statistics.median(numpy_times):.0f}x"
        )
    print(line + f" (medians of {args.repeats})")


if __name__ == "__main__":
    main()
