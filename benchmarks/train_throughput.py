"""Training throughput: env steps/s of `insight train`'s loop against a baseline loop written
the straightforward way (gymnasium SyncVectorEnv with the usual Atari wrappers, and a separate
encoder pass for each of the critic, the neural actor and the EQL actor), in the same run.

    .venv/bin/python benchmarks/train_throughput.py [--game Pong] [--updates 3] [--num-steps 128]
    .venv/bin/python benchmarks/train_throughput.py --preset cpu [--updates 6]

With --preset cpu: `insight train` with the cpu preset's perception (the DQN-style encoder, 256
wide, pretrained for one epoch here and frozen) and envs, next to the env alone (random actions)
in the same run: prints `cpu preset: <N> env steps/s` and the env-only rate.

Both loops do the same work per update: a rollout of num-envs x num-steps, then 4 epochs of 4
minibatches of PPO + guidance + EQL penalty + one perception batch per minibatch. Prints the
median SPS of each over the updates after the first (warm-up) and their ratio (target >= 2x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from insight_cli.dataset import load_dataset
from insight_cli.envs import make_vector_env
from insight_cli.perception.data import choose_slots, decode
from insight_cli.perception.losses import object_weights, perception_loss
from insight_cli.perception.model import PerceptionConfig
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train.agent import Agent, AgentConfig
from insight_cli.train.eql import eql_penalty
from insight_cli.train.ppo import compute_gae
from insight_cli.train.stage import TrainConfig
from insight_cli.train.stage import run as train


def baseline_sps(game: str, dataset_path: Path, num_envs: int, num_steps: int, updates: int) -> list[float]:
    """A plain PPO loop: gymnasium envs, float observations, one encoder pass per head."""
    dataset = load_dataset(dataset_path)
    slots = choose_slots(dataset, "auto")
    data = decode(dataset, slots, torch.device("cpu"))
    weights = object_weights(data.frequency)
    env = make_vector_env(game, num_envs, seed=0, backend="gymnasium")
    agent = Agent(AgentConfig(PerceptionConfig(len(slots)), len(env.action_meanings)))
    optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5)

    def heads(obs):
        features_actor = agent.perception(obs).features
        features_critic = agent.perception(obs).features
        perception = agent.perception(obs)
        return (
            agent.actor(features_actor),
            agent.critic(features_critic).squeeze(-1),
            agent.eql(agent.perception.object_coordinates(perception)),
        )

    obs = torch.tensor(env.reset(), dtype=torch.float32) / 255.0
    rates = []
    for _ in range(updates):
        start = time.perf_counter()
        stored_obs, actions, logprobs, rewards, values, dones = [], [], [], [], [], []
        done = torch.zeros(num_envs)
        for _ in range(num_steps):
            with torch.no_grad():
                logits, value, _ = heads(obs)
            distribution = torch.distributions.Categorical(logits=logits)
            action = distribution.sample()
            stored_obs.append(obs)
            actions.append(action)
            logprobs.append(distribution.log_prob(action))
            values.append(value)
            dones.append(done)
            result = env.step(action.numpy())
            rewards.append(torch.tensor(result.reward))
            done = torch.tensor((result.terminated | result.truncated).astype(np.float32))
            obs = torch.tensor(result.obs, dtype=torch.float32) / 255.0
        with torch.no_grad():
            next_value = heads(obs)[1]
        advantages, returns = compute_gae(
            torch.stack(rewards), torch.stack(values), torch.stack(dones), next_value, done, 0.99, 0.95
        )
        b_obs, b_actions, b_logprobs = torch.cat(stored_obs), torch.cat(actions), torch.cat(logprobs)
        b_advantages, b_returns = advantages.flatten(), returns.flatten()
        for _ in range(4):
            order = torch.randperm(len(b_actions))
            for mb in order.split(len(order) // 4):
                logits, value, eql_logits = heads(b_obs[mb])
                distribution = torch.distributions.Categorical(logits=logits)
                ratio = (distribution.log_prob(b_actions[mb]) - b_logprobs[mb]).exp()
                advantage = (b_advantages[mb] - b_advantages[mb].mean()) / (b_advantages[mb].std() + 1e-8)
                pg_loss = torch.max(-advantage * ratio, -advantage * ratio.clamp(0.9, 1.1)).mean()
                loss = pg_loss + 0.5 * ((value - b_returns[mb]) ** 2).mean() - 0.01 * distribution.entropy().mean()
                loss = loss + F.cross_entropy(eql_logits, logits.detach().argmax(-1)) + 1e-3 * eql_penalty(agent.eql)
                rows = data.train_rows[torch.randint(len(data.train_rows), (32,))]
                stacks, targets = data.batch(rows)
                loss = loss + 2.0 * perception_loss(agent.perception(stacks.float() / 255.0), targets, weights).total
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
                optimizer.step()
        rates.append(num_envs * num_steps / (time.perf_counter() - start))
    return rates


def insight_sps(
    game: str, dataset_path: Path, num_envs: int, num_steps: int, updates: int, runs_dir: Path, **options
) -> list[float]:
    """`insight train` itself, read back from its metrics table (SPS after each update)."""
    import pyarrow.parquet as pq

    config = TrainConfig(
        game=game,
        dataset=dataset_path,
        runs_dir=runs_dir,
        run_name="bench",
        num_envs=num_envs,
        num_steps=num_steps,
        total_steps=num_envs * num_steps * updates,
        eval_episodes=0,
        eval_every=1.0,
        device="cpu",
        **options,
    )
    train(config)
    rows = pq.read_table(runs_dir / "bench" / "metrics.parquet").to_pylist()
    elapsed = [row["step"] / row["charts/sps"] for row in rows]  # charts/sps: steps so far / seconds so far
    return [num_envs * num_steps / seconds for seconds in np.diff([0.0, *elapsed])]


def env_only_sps(game: str, num_envs: int, steps: int, repeats: int = 3) -> float:
    """The vector env alone, random actions: the ceiling for any learner on this machine."""
    from insight_cli.games import get_game

    env = make_vector_env(get_game(game), num_envs, seed=0, mode="train")
    env.reset()
    generator = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            env.step(generator.integers(len(env.action_meanings), size=num_envs))
        rates.append(num_envs * steps / (time.perf_counter() - started))
    env.close()
    return statistics.median(rates)


def cpu_preset(game: str, updates: int) -> None:
    from insight_cli.pipeline import PRESETS
    from insight_cli.pretrain.stage import PretrainConfig
    from insight_cli.pretrain.stage import run as pretrain

    preset = PRESETS["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        segment(SegmentConfig(game=game, frames=600, out=root / "dataset"))
        pretrain(
            PretrainConfig(
                game=game,
                dataset=root / "dataset",
                out=root / "perception.ckpt",
                epochs=1,
                hidden=preset.hidden,
                encoder=preset.encoder,
                min_seen=preset.min_seen,
                device="cpu",
            )
        )
        ours = insight_sps(
            game,
            root / "dataset",
            preset.num_envs,
            preset.num_steps,
            updates,
            root / "runs",
            load_cnn=True,
            freeze_cnn=preset.freeze_cnn,
            perception=root / "perception.ckpt",
        )
    env_rate = env_only_sps(game, preset.num_envs, preset.num_steps)
    ours_median = statistics.median(ours[1:] or ours)
    print(
        f"{game}, {preset.num_envs} envs x {preset.num_steps} steps per update, {updates} updates, "
        f"{torch.get_num_threads()} threads (median env steps/s after the first update)"
    )
    print(f"cpu preset: {ours_median:.0f} env steps/s")
    print(f"env only:   {env_rate:.0f} env steps/s (random actions; {env_rate / ours_median:.2f}x the cpu preset)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--preset", choices=["cpu"], help="measure a pipeline preset's train settings instead")
    args = parser.parse_args()
    if args.preset == "cpu":
        cpu_preset(args.game, args.updates)
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset_path = Path(tmp) / "dataset"
        segment(SegmentConfig(game=args.game, frames=300, out=dataset_path))
        ours = insight_sps(args.game, dataset_path, args.num_envs, args.num_steps, args.updates, Path(tmp) / "runs")
        baseline = baseline_sps(args.game, dataset_path, args.num_envs, args.num_steps, args.updates)
    ours_median, baseline_median = statistics.median(ours[1:] or ours), statistics.median(baseline[1:] or baseline)
    print(
        f"{args.game}, {args.num_envs} envs x {args.num_steps} steps per update, {args.updates} updates, "
        f"{torch.get_num_threads()} threads (median env steps/s after the first update)"
    )
    print(f"  insight train loop:                      {ours_median:8.1f}")
    print(f"  baseline (gymnasium, 3 encoder passes):  {baseline_median:8.1f}")
    print(f"  ratio:                                   {ours_median / baseline_median:8.2f}x")


if __name__ == "__main__":
    main()
