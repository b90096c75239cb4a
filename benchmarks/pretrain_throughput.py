"""Perception training throughput: samples/s of one full step (augment, forward, losses,
backward, fused Adam) at the paper's size (hidden 2048, batch 32) on synthetic stacks.

    .venv/bin/python benchmarks/pretrain_throughput.py [--steps 10] [--objects 16] [--repeats 3]

On CPU it times fp32. With a GPU it also times bf16 autocast and channels_last, and prints each
variant's speed relative to fp32 measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from insight_cli.perception.data import shift_batch
from insight_cli.perception.losses import PerceptionTargets, object_weights, perception_loss
from insight_cli.perception.model import PerceptionConfig, PerceptionNet


def samples_per_second(device, objects, batch, steps, amp, channels_last) -> float:
    torch.manual_seed(0)
    model = PerceptionNet(PerceptionConfig(n_objects=objects)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-4, fused=True)
    stacks = torch.randint(0, 255, (batch, 4, 84, 84), dtype=torch.uint8, device=device)
    exists = torch.rand(batch, objects, 4, device=device) > 0.3
    targets = PerceptionTargets(
        exists, torch.rand(batch, objects, 4, 2, device=device), torch.rand(batch, objects, 2, device=device)
    )
    margins = torch.full((batch, 4), 8, device=device)
    weights = object_weights(torch.rand(objects, device=device))
    generator = torch.Generator(device=device).manual_seed(0)

    def step():
        shifted, moved = shift_batch(stacks, targets, margins, 8, generator)
        if channels_last:
            shifted = shifted.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            losses = perception_loss(model(shifted), moved, weights)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()

    step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--objects", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    variants = {"fp32": (False, False)}
    if device.type == "cuda":
        variants.update({"bf16 autocast": (True, False), "bf16 + channels_last": (True, True)})
    results = {}
    for name, (amp, channels_last) in variants.items():
        runs = [
            samples_per_second(device, args.objects, args.batch, args.steps, amp, channels_last)
            for _ in range(args.repeats)
        ]
        results[name] = statistics.median(runs)
    print(
        f"perception training step on {device} ({torch.get_num_threads()} threads), batch {args.batch}, "
        f"K={args.objects}"
    )
    for name, rate in results.items():
        print(f"  {name:22s} {rate:9.1f} samples/s  ({rate / results['fp32']:.2f}x fp32)")


if __name__ == "__main__":
    main()
