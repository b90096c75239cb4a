"""Seconds to expand a one-layer EQL actor into polynomials: the numpy path extract-policy uses
against sympy's sparse polynomial ring (what it used before, and still uses for deeper actors).

The actor is a barely trained MetaDrive one: 13 objects and 19 ego state values (123 inputs),
default initialisation, means not sharpened, so tens of thousands of terms survive pruning.

    .venv/bin/python benchmarks/extract_speed.py [--threshold 0.04] [--repeats 3]

Repeats alternate between the two; prints the medians, their ratio and the terms left.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from insight_cli.extract_policy import symbolic
from insight_cli.train.eql import EqlActor, EqlConfig

INPUTS = 13 * 8 + 19


def seconds(actor: EqlActor, threshold: float, dense_entries: int) -> tuple[float, list[dict]]:
    symbolic.DENSE_ENTRIES = dense_entries  # 0: too large for numpy, so the ring expands it
    start = time.perf_counter()
    logits = symbolic.expand(actor, INPUTS, threshold)
    return time.perf_counter() - start, logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold", type=float, default=0.04)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    actor = EqlActor(EqlConfig(INPUTS, 2, inverse_temperature=1.0))
    print(f"term bound at threshold {args.threshold:g}: {symbolic.term_bound(actor, INPUTS, args.threshold):,}")
    default = symbolic.DENSE_ENTRIES
    numpy_times, ring_times = [], []
    for _ in range(args.repeats):
        took, fast = seconds(actor, args.threshold, default)
        numpy_times.append(took)
        took, slow = seconds(actor, args.threshold, 0)
        ring_times.append(took)
    kept = [sum(abs(c) >= args.threshold for c in logit.values()) for logit in fast]
    assert [len(logit) for logit in fast] == [len(logit) for logit in slow], "the two expansions disagree"
    numpy_median, ring_median = statistics.median(numpy_times), statistics.median(ring_times)
    print(f"expanded terms per action {[len(logit) for logit in fast]}, kept (>= threshold) {kept}")
    print(f"numpy {numpy_median:.2f} s, sympy ring {ring_median:.2f} s (medians of {args.repeats}): "
          f"{ring_median / numpy_median:.0f}x")


if __name__ == "__main__":
    main()
