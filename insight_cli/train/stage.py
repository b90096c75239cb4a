"""`insight train`: the training loop around `ppo_update`: rollouts, evaluation, logging,
checkpoints, resume and data-parallel ranks (docs/design.md §9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np
import torch

from insight_cli import paths
from insight_cli.checkpoint import load_checkpoint, plain_config, save_checkpoint
from insight_cli.dataset import load_dataset
from insight_cli.envs import ego_states, make_vector_env
from insight_cli.errors import InsightError
from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.files import ensure_writable, process_alive, write_atomically
from insight_cli.games import get_game
from insight_cli.perception.data import choose_slots, decode, shift_batch, slot_entries, slots_of
from insight_cli.perception.losses import object_weights, perception_loss
from insight_cli.perception.model import PerceptionConfig, PerceptionOutput
from insight_cli.pretrain.metrics import evaluate as evaluate_perception
from insight_cli.progress import console, progress_bar
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train import distributed
from insight_cli.train.agent import Agent, AgentConfig
from insight_cli.train.config import TrainConfig
from insight_cli.train.logger import MetricsLogger
from insight_cli.train.ppo import PpoSettings, Rollout, compute_gae, dagger_update, ppo_update

PERCEPTION_BATCH = 32
CENTRE_FRAMES = 1024  # dataset stacks the heads' feature centre is the mean over
CNN_WEIGHT_DECAY = 1e-4
UNCHECKED_ON_RESUME = ("resume", "run_name", "force")
TRAIN_OUTPUTS = ("run.ckpt", "run.resume.*.ckpt", "metrics.parquet", "metrics.csv", "learning_curve.png", "result.json")
LOCK = ".train.lock"  # in the run folder while a train writes it: the writer's pid


@dataclass
class TrainResult:
    checkpoint: Path
    global_step: int
    steps_per_second: float
    last_eval: dict


class _Stop:
    """Ctrl-C or SIGTERM (a scheduler's or `kill`'s stop) asks the loop to finish the update it
    is in, save, and exit; a second one aborts."""

    requested = False
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    @classmethod
    @contextmanager
    def on_interrupt(cls):
        cls.requested = False

        def handler(signum, frame):
            if cls.requested:
                raise KeyboardInterrupt
            cls.requested = True
            console.print("[yellow]interrupt: finishing this update, then saving a resumable checkpoint[/]")

        try:
            previous = [signal.signal(number, handler) for number in cls.SIGNALS]
        except ValueError:  # not the main thread: no handler
            yield
            return
        try:
            yield
        finally:
            for number, handler_before in zip(cls.SIGNALS, previous):
                signal.signal(number, handler_before)


def _run_dir(config: TrainConfig, game_name: str) -> Path:
    runs = Path(config.runs_dir or paths.runs_dir(game_name))
    if config.run_name:
        return runs / config.run_name
    if config.resume:
        existing = sorted(runs.glob(f"*/{paths.RUN_CHECKPOINT}"), key=lambda path: path.stat().st_mtime)
        if not existing:
            raise InsightError(
                f"--resume: no run to resume in {runs}", hint="give --run-name or start without --resume"
            )
        return existing[-1].parent
    return runs / datetime.now().strftime("%Y%m%d-%H%M%S")


def run(config: TrainConfig) -> TrainResult:
    config.validate()
    game = get_game(config.game)
    device = resolve_device(config.device)
    ranks = distributed.init_ranks(device.type)
    if device.type == "cuda" and ranks.distributed:
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    try:
        run_dir = _run_dir(config, game.name)
        with _claimed(run_dir, config, ranks.main):
            return _train(config, game, device, ranks, run_dir)
    finally:
        distributed.shutdown(ranks)


@contextmanager
def _claimed(run_dir: Path, config: TrainConfig, main: bool):
    """Hold `run_dir` for this train: refuse a run that exists (unless resumed or --force) and
    one another train is writing (a lock file naming its pid); remove the folder again if the
    train fails before saving anything in it."""
    if not main:
        yield
        return
    if (run_dir / paths.RUN_CHECKPOINT).exists() and not (config.resume or config.force):
        raise InsightError(
            f"{run_dir} already holds a run",
            hint="--resume continues it, --force replaces it, or choose another --run-name",
        )
    ensure_writable(run_dir / paths.RUN_CHECKPOINT)
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]  # deepest first
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().strip()
        if owner.isdigit() and process_alive(int(owner)):
            raise InsightError(
                f"another insight train (pid {owner}) is writing {run_dir}",
                hint="wait for it, or choose another --run-name",
            ) from None
        lock.unlink(missing_ok=True)  # its train was killed
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(str(os.getpid()))
    if config.force and not config.resume:
        _clear_run(run_dir)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        for folder in created:  # a train that saved nothing leaves no empty folders
            if any(folder.iterdir()):
                break
            folder.rmdir()


def _clear_run(run_dir: Path) -> None:
    """--force: the replaced run's training outputs go; its tensorboard events would otherwise
    mix into the new run's curves."""
    for pattern in TRAIN_OUTPUTS:
        for path in run_dir.glob(pattern):
            path.unlink()
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def _perception(config: TrainConfig, game, dataset):
    """The object slots, the perception network's config and its pretrained weights (None: a
    random start): the dataset fixes the slots, and a pretrained CNN must match them."""
    slots = choose_slots(dataset, "auto")
    if not config.load_cnn:
        return (
            slots,
            PerceptionConfig(n_objects=max(len(slots), 1), hidden=config.hidden, threshold=config.threshold),
            None,
        )
    path = Path(config.perception or paths.perception_checkpoint(game.name))
    pretrained = load_checkpoint(path, kind="perception")
    if pretrained.meta["game"] != game.name:
        raise InsightError(f"{path} was trained for {pretrained.meta['game']}, not {game.name}")
    if pretrained.meta["dataset_fingerprint"] != dataset.meta["fingerprint"]:
        raise InsightError(
            f"{path} was trained on another dataset than {dataset.path}",
            hint="pretrain again on this dataset, or pass the matching --dataset",
        )
    perception_config = replace(PerceptionConfig.from_dict(pretrained.config), threshold=config.threshold)
    return slots_of(pretrained.meta), perception_config, pretrained.state["model"]


def _optimizer(agent: Agent, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the heads, and over the perception (with weight decay) unless it is frozen."""
    groups = [{"params": agent.head_parameters(), "weight_decay": 0.0}]
    if config.freeze_cnn:
        agent.perception.requires_grad_(False)
    else:
        groups.append({"params": list(agent.perception.parameters()), "weight_decay": CNN_WEIGHT_DECAY})
    return torch.optim.Adam(groups, lr=config.lr, eps=1e-5)


def _rollout_buffer(config: TrainConfig, agent_config: AgentConfig, device: torch.device) -> Rollout:
    shape = (config.num_steps, config.num_envs)
    actions = (
        torch.zeros(shape + (agent_config.n_actions,), device=device)
        if agent_config.continuous
        else torch.zeros(shape, dtype=torch.long, device=device)
    )
    return Rollout(
        obs=torch.zeros(shape + (4, 84, 84), dtype=torch.uint8, device=device),
        states=torch.zeros(shape + (agent_config.state_size,), device=device),
        actions=actions,
        logprobs=torch.zeros(shape, device=device),
        rewards=torch.zeros(shape, device=device),
        dones=torch.zeros(shape, device=device),
        values=torch.zeros(shape, device=device),
    )


def _train(config: TrainConfig, game, device: torch.device, ranks: distributed.Ranks, run_dir: Path) -> TrainResult:
    checkpoint_path = run_dir / paths.RUN_CHECKPOINT
    seed_everything(config.seed + ranks.rank)

    # Perception: the dataset fixes the object slots; a pretrained CNN must match them.
    dataset = load_dataset(Path(config.dataset or paths.dataset_dir(game.name)))
    if dataset.game != game.name:
        raise InsightError(
            f"{dataset.path} is a {dataset.game} dataset, not {game.name}", hint="check --game or --dataset"
        )
    slots, perception_config, perception_state = _perception(config, game, dataset)
    data = decode(dataset, slots, device)
    weights = object_weights(data.frequency)

    state_size = len(game.state) if config.ego_state else 0
    agent_config = AgentConfig(
        perception_config, len(game.action_names), config.n_layers, config.n_funcs, game.continuous, state_size
    )
    agent = Agent(agent_config).to(device)
    if perception_state is not None:
        agent.perception.load_state_dict(perception_state)
    elif not config.resume:
        agent.perception.encoder.set_background(data.frames[1:])
    if not config.resume:  # a resumed run loads its own centre
        agent.centre_features(data.batch(_spread(data.train_rows, CENTRE_FRAMES))[0])
    distributed.broadcast_parameters(agent, ranks)
    optimizer = _optimizer(agent, config)
    settings = PpoSettings(
        num_minibatches=config.num_minibatches,
        update_epochs=config.update_epochs,
        neural_guidance=config.ng,
        clip_coef=config.clip_coef,
        kl_coef=config.kl_coef,
        distill_weight=config.distill_weight,
        cnn_loss_weight=config.cnn_loss_weight,
    )
    env = make_vector_env(game, config.num_envs, seed=config.seed + ranks.rank * config.num_envs, mode="train")
    generator = torch.Generator(device=device).manual_seed(config.seed + ranks.rank)

    batch_per_update = config.num_envs * config.num_steps * ranks.world_size
    num_updates = max(1, config.total_steps // batch_per_update)
    # PPO for the first updates; in the last ones (DAgger) the EQL actor plays greedily and
    # learns the neural actor's choices on the states it reaches itself.
    dagger_updates = min(num_updates - 1, round(num_updates * config.dagger_share))
    ppo_updates = num_updates - dagger_updates
    eval_interval = max(1, round(num_updates * config.eval_every))
    meta = {
        "game": game.name,
        "action_meanings": game.action_names,
        "objects": slot_entries(slots),
        "dataset": str(dataset.path),
        "dataset_fingerprint": dataset.meta["fingerprint"],
        "frame_shape": dataset.meta.get("frame_shape"),
        "agent": agent_config.to_dict(),
    }

    rollout = _rollout_buffer(config, agent_config, device)
    cursor = EnvCursor(
        torch.from_numpy(env.reset()).to(device),
        _ego_state(env, state_size, device),
        torch.zeros(config.num_envs, device=device),
        np.zeros(config.num_envs),
    )
    start_update, global_step, last_eval = 1, 0, {}
    logger_rows: list[dict] = []
    if config.resume:
        state = _restore(checkpoint_path, config, agent, optimizer, generator, env)
        start_update, global_step, last_eval, logger_rows = (
            state["update"] + 1,
            state["global_step"],
            state["last_eval"],
            state["rows"],
        )
        cursor = EnvCursor(
            state["next_obs"].to(device),
            _ego_state(env, state_size, device),
            state["next_done"].to(device),
            np.array(state["episode_returns"]),
        )
    logger = MetricsLogger(run_dir, enabled=ranks.main, rows=logger_rows)

    def perception_refinement_loss() -> torch.Tensor:
        rows = data.train_rows[
            torch.randint(len(data.train_rows), (PERCEPTION_BATCH,), generator=generator, device=generator.device).to(
                device
            )
        ]
        stacks, targets = data.batch(rows)
        stacks, targets = shift_batch(
            stacks, targets, data.margins[rows], 8, generator, agent.perception.encoder.background
        )
        return perception_loss(agent.perception(stacks), targets, weights).total

    def save(update: int) -> None:
        """run.ckpt holds what the later stages need (the agent); run.resume.<update>.ckpt,
        written first, the optimizer, RNG and env state that only --resume needs. The resume
        file of the update before is removed only once run.ckpt is replaced, so a kill at any
        instant leaves a run.ckpt with its own resume file."""
        if not ranks.main:
            return
        run_meta = {
            **meta,
            "global_step": global_step,
            "update": update,
            "num_updates": num_updates,
            "last_eval": last_eval,
        }
        resume_state = {
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "env": env.state() if hasattr(env, "state") else None,
            "next_obs": cursor.obs,
            "next_done": cursor.done,
            "episode_returns": cursor.episode_returns.tolist(),
            "update": update,
            "global_step": global_step,
            "last_eval": last_eval,
            "rows": logger.rows,
        }
        resume_path = _resume_path(checkpoint_path, update)
        save_checkpoint(resume_path, "run-resume", plain_config(config), run_meta, resume_state)
        save_checkpoint(checkpoint_path, "run", plain_config(config), run_meta, {"agent": agent.state_dict()})
        for stale in run_dir.glob("run.resume.*.ckpt"):
            if stale != resume_path:
                stale.unlink(missing_ok=True)

    recent_returns: deque[float] = deque(maxlen=20)  # the last finished training episodes
    started, steps_at_start, steps_per_second = time.perf_counter(), global_step, 0.0
    update = start_update - 1
    with _Stop.on_interrupt(), progress_bar("env steps", ranks.main) as progress:
        task = progress.add_task(
            f"train {game.name}", total=num_updates * batch_per_update, completed=global_step, start=global_step
        )
        for update in range(start_update, num_updates + 1):
            imitating, lr, reg_weight_now = schedule(update, ppo_updates, dagger_updates, config.lr, config.reg_weight)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if imitating and update == ppo_updates + 1:
                recent_returns.clear()  # from here on they are the EQL actor's
            perceived = collect_rollout(
                agent,
                env,
                rollout,
                cursor,
                recent_returns,
                actor="eql" if imitating or not config.ng else "neural",
                greedy=imitating,
                keep_perception=config.freeze_cnn,
            )
            global_step += config.num_steps * config.num_envs * ranks.world_size
            average = partial(distributed.average_gradients, agent, ranks)
            if imitating:
                stats = dagger_update(
                    agent=agent,
                    optimizer=optimizer,
                    rollout=rollout,
                    settings=settings,
                    reg_weight=reg_weight_now,
                    reduce_gradients=average,
                    generator=generator,
                    perceived=perceived,
                )
            else:
                with torch.no_grad():
                    next_value = agent(cursor.obs, cursor.state).value.float()
                advantages, returns = compute_gae(
                    rollout.rewards,
                    rollout.values,
                    rollout.dones,
                    next_value,
                    cursor.done,
                    settings.gamma,
                    settings.gae_lambda,
                )
                refine = config.cnn_loss_weight > 0 and not config.freeze_cnn
                stats = ppo_update(
                    agent=agent,
                    optimizer=optimizer,
                    rollout=rollout,
                    advantages=advantages,
                    returns=returns,
                    settings=settings,
                    reg_weight_now=reg_weight_now,
                    perception_loss_fn=perception_refinement_loss if refine else None,
                    reduce_gradients=average,
                    generator=generator,
                    perceived=perceived,
                )

            steps_per_second = (global_step - steps_at_start) / (time.perf_counter() - started)
            scalars = {f"losses/{name}": value for name, value in stats.items()}
            scalars.update(
                {
                    "charts/sps": steps_per_second,
                    "charts/learning_rate": optimizer.param_groups[0]["lr"],
                    "charts/reg_weight": reg_weight_now,
                }
            )
            if recent_returns:
                scalars["train/eql_episode_return" if imitating else "train/episode_return"] = float(
                    np.mean(recent_returns)
                )
            if update % eval_interval == 0 or update == num_updates:
                last_eval = _evaluate(agent, game, data, weights, config, device, meta, update, ranks)
                scalars.update(last_eval)
            logger.log(global_step, scalars)
            progress.update(
                task, completed=global_step, description=_status(game.name, recent_returns, last_eval, imitating)
            )
            if update % eval_interval == 0 or update == num_updates or _Stop.requested:
                save(update)
            if _Stop.requested:
                break

    in_sync = distributed.parameters_in_sync(agent, ranks)
    if ranks.main:
        logger.write_table()
        logger.learning_curve(run_dir / "learning_curve.png")
        summary = {
            "checkpoint": str(checkpoint_path),
            "global_step": global_step,
            "updates": update,
            "num_updates": num_updates,
            "steps_per_second": steps_per_second,
            "last_eval": last_eval,
            "world_size": ranks.world_size,
            "ranks_in_sync": in_sync,
            "interrupted": _Stop.requested,
        }
        write_atomically(run_dir / "result.json", json.dumps(summary, indent=2))
    logger.close()
    env.close()
    if _Stop.requested:
        raise KeyboardInterrupt
    return TrainResult(checkpoint_path, global_step, steps_per_second, last_eval)


@dataclass
class EnvCursor:
    """Where the envs are between rollouts: the next observation and ego state, whether it
    starts an episode, and each env's return so far (saved with a run, for --resume)."""

    obs: torch.Tensor  # (N, 4, 84, 84) uint8
    state: torch.Tensor  # (N, S)
    done: torch.Tensor  # (N,) 1.0 where obs starts a new episode
    episode_returns: np.ndarray  # (N,)


def schedule(update: int, ppo_updates: int, dagger_updates: int, lr: float, reg_weight: float):
    """For update number `update` (from 1): whether it is a DAgger update, its learning rate
    (each phase anneals linearly from `lr` to 0) and the sparsity weight (rising linearly to
    `reg_weight` over the PPO updates, then held)."""
    imitating = update > ppo_updates
    if imitating:
        fraction_left = 1.0 - (update - ppo_updates - 1.0) / dagger_updates
    else:
        fraction_left = 1.0 - (update - 1.0) / ppo_updates
    return imitating, fraction_left * lr, reg_weight * min(1.0, (update - 1) / max(ppo_updates - 1, 1))


@torch.no_grad()
def collect_rollout(
    agent, env, rollout: Rollout, cursor: EnvCursor, finished: deque, actor: str, greedy: bool, keep_perception: bool
) -> PerceptionOutput | None:
    """Fill `rollout` with T steps of every env played by `actor` ("neural" or "eql"), sampling
    or, if `greedy`, taking its most likely action; advance `cursor` and append the returns of
    the episodes that end to `finished`. Returns the steps' perception outputs, (T * N, ...),
    if `keep_perception` (a frozen CNN: the update reuses them), else None."""
    continuous = agent.config.continuous
    device = cursor.obs.device
    perceived = []
    for step in range(rollout.obs.shape[0]):
        rollout.obs[step], rollout.states[step], rollout.dones[step] = cursor.obs, cursor.state, cursor.done
        out = agent(cursor.obs, cursor.state)
        if keep_perception:
            perceived.append(out.perception)
        distribution = agent.policy(out, actor)
        if not greedy:
            action = distribution.sample()
        else:  # continuous: the pre-tanh mean, whose tanh is the greedy action
            action = agent.greedy(out, actor) if not continuous else agent.scores(out, actor).float()
        rollout.values[step] = out.value.float()
        rollout.actions[step] = action
        rollout.logprobs[step] = distribution.log_prob(action)
        result = env.step((torch.tanh(action) if continuous else action).cpu().numpy())
        rollout.rewards[step] = torch.from_numpy(result.reward).to(device)
        cursor.obs = torch.from_numpy(result.obs).to(device)
        cursor.state = _ego_state(env, cursor.state.shape[1], device)
        done = result.terminated | result.truncated
        cursor.done = torch.from_numpy(done.astype(np.float32)).to(device)
        cursor.episode_returns += result.reward
        for index in np.flatnonzero(done):
            finished.append(float(cursor.episode_returns[index]))
            cursor.episode_returns[index] = 0.0
    return PerceptionOutput(*(torch.cat(parts) for parts in zip(*perceived))) if perceived else None


def _evaluate(agent, game, data, weights, config, device, meta, update, ranks) -> dict:
    """The EQL actor's raw return over full episodes, and the perception's test-split quality."""
    if not ranks.main:
        return {}
    agent.eval()
    scores = {}
    if config.eval_episodes:
        returns = play_episodes(
            agent_actor(agent, "eql"), game, config.eval_episodes, seed=config.seed + 100_003 * update, device=device
        ).returns
        scores["eval/eql_return"] = float(np.mean(returns)) if returns else float("nan")
    perception = evaluate_perception(agent.perception, data, weights, PERCEPTION_BATCH, False, meta["frame_shape"])
    scores.update(
        {
            "perception/test_loss": perception["test_loss"],
            "perception/mae_x100": perception["mae_x100"],
            "perception/existence_ap": perception["existence_ap"],
        }
    )
    agent.train()
    return scores


def _ego_state(env, state_size: int, device: torch.device) -> torch.Tensor:
    """(N, S) the envs' current ego states, (N, 0) when the agent takes none."""
    return ego_states(env, device) if state_size else torch.zeros((env.num_envs, 0), device=device)


def _spread(rows: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` of `rows`, evenly spaced (the same on every rank)."""
    return rows[torch.linspace(0, len(rows) - 1, min(count, len(rows)), device=rows.device).long()]


def _resume_path(checkpoint_path: Path, update: int) -> Path:
    return checkpoint_path.with_name(f"run.resume.{update}.ckpt")


def _restore(checkpoint_path: Path, config, agent, optimizer, generator, env) -> dict:
    checkpoint = load_checkpoint(checkpoint_path, kind="run")
    saved = {key: value for key, value in checkpoint.config.items() if key not in UNCHECKED_ON_RESUME}
    now = {key: value for key, value in plain_config(config).items() if key not in UNCHECKED_ON_RESUME}
    changed = sorted(key for key in now if saved.get(key) != now[key])
    if changed:
        raise InsightError(
            f"--resume: {checkpoint_path} was trained with other settings ({', '.join(changed)})",
            hint="resume with the same options",
        )
    resume_path = _resume_path(checkpoint_path, checkpoint.meta["update"])
    if not resume_path.exists():
        raise InsightError(
            f"--resume: {resume_path}, the resume state of {checkpoint_path}, is missing",
            hint="it holds the optimizer and RNG state; without it, start again with --force",
        )
    resume = load_checkpoint(resume_path, kind="run-resume").state
    if resume["update"] != checkpoint.meta["update"]:
        raise InsightError(
            f"--resume: {resume_path} does not belong to {checkpoint_path}",
            hint="both are written by the same save; was one of them copied or replaced?",
        )
    agent.load_state_dict(checkpoint.state["agent"])
    optimizer.load_state_dict(resume["optimizer"])
    generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    if resume["cuda_rng"]:
        torch.cuda.set_rng_state_all(resume["cuda_rng"])
    if resume["env"] is not None and hasattr(env, "restore"):
        env.restore(resume["env"])
    else:  # the ALE vector env cannot save its emulators: episodes restart from a fresh seed
        resume = {
            **resume,
            "next_obs": torch.from_numpy(env.reset(seed=config.seed + 7919 * resume["update"])),
            "next_done": torch.zeros_like(resume["next_done"]),
            "episode_returns": [0.0] * env.num_envs,
        }
        console.print("[yellow]resume: this game's envs cannot be saved, so its episodes restart[/]")
    return resume


def _status(game: str, returns: list[float], last_eval: dict, imitating: bool) -> str:
    parts = [f"train {game}" + (" (DAgger)" if imitating else "")]
    if returns:
        parts.append(f"{'EQL plays' if imitating else 'return'} {np.mean(returns):.1f}")
    if "eval/eql_return" in last_eval:
        parts.append(f"EQL {last_eval['eval/eql_return']:.1f}")
    return " | ".join(parts)
