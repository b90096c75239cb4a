"""`insight train`: the training loop around `ppo_update`: rollouts, evaluation, logging,
checkpoints, resume and data-parallel ranks (docs/design.md §9)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.dataset import load_dataset
from insight_cli.envs import make_vector_env
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate.episodes import agent_actor, ego_states, play_episodes
from insight_cli.files import ensure_writable, process_alive, write_atomically
from insight_cli.games import get_game
from insight_cli.perception.losses import object_weights, perception_loss
from insight_cli.perception.model import PerceptionConfig, PerceptionOutput
from insight_cli.pretrain.data import choose_slots, decode, shift_batch
from insight_cli.pretrain.metrics import evaluate as evaluate_perception
from insight_cli.progress import console
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train import distributed
from insight_cli.train.agent import Agent, AgentConfig
from insight_cli.train.logger import MetricsLogger
from insight_cli.train.ppo import PpoSettings, Rollout, compute_gae, ppo_update

PERCEPTION_BATCH = 32
CENTRE_FRAMES = 1024  # dataset stacks the heads' feature centre is the mean over
CNN_WEIGHT_DECAY = 1e-4
MAX_ENVS = 1024
UNCHECKED_ON_RESUME = ("resume", "run_name", "force")
LOCK = ".train.lock"  # in the run folder while a train writes it: the writer's pid
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass
class TrainConfig:
    game: str = "Pong"
    total_steps: int = 10_000_000  # env steps (x4 frames) summed over envs and ranks
    num_envs: int = 8
    num_steps: int = 128
    num_minibatches: int = 4
    update_epochs: int = 4
    lr: float = 2.5e-4
    ng: bool = True
    reg_weight: float = 1e-3
    clip_coef: float = 0.1
    kl_coef: float = 0.0
    ego_state: bool = True  # games with an ego state (MetaDrive): give it to the actors and the critic
    n_funcs: int = 4
    n_layers: int = 1
    cnn_loss_weight: float = 2.0
    distill_weight: float = 1.0
    threshold: float = 0.5
    load_cnn: bool = False
    freeze_cnn: bool = False  # keep the perception CNN as loaded: no RL, guidance or refinement updates
    perception: Path | None = None  # default: data/<Game>/perception.ckpt
    dataset: Path | None = None  # default: data/<Game>/dataset
    runs_dir: Path | None = None  # default: data/<Game>/runs
    run_name: str | None = None  # default: a timestamp; with resume, the latest run
    resume: bool = False
    force: bool = False  # replace a run that already exists under --run-name
    eval_episodes: int = 10
    eval_every: float = 0.01  # fraction of training between evaluations and checkpoints
    hidden: int = 2048  # perception width when not loading a CNN
    device: str = "auto"
    seed: int = 0


@dataclass
class TrainResult:
    checkpoint: Path
    global_step: int
    steps_per_second: float
    last_eval: dict
    ranks_in_sync: bool


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


def _validate(config: TrainConfig) -> None:
    positive = ("total_steps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "n_funcs", "n_layers", "hidden")
    for name in positive:
        if getattr(config, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")
    for name in ("lr", "eval_every"):
        if not getattr(config, name) > 0:  # also refuses nan
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")
    for name in ("reg_weight", "cnn_loss_weight", "distill_weight", "eval_episodes", "clip_coef", "kl_coef"):
        if not getattr(config, name) >= 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(config, name)}")
    for name in ("lr", "reg_weight", "cnn_loss_weight", "distill_weight", "clip_coef", "kl_coef"):
        if not np.isfinite(getattr(config, name)):
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(config, name)}")
    if config.eval_every > 1:
        raise UsageError(f"--eval-every is a fraction of training, at most 1, got {config.eval_every}")
    if config.num_envs > MAX_ENVS:
        raise UsageError(f"--num-envs {config.num_envs} is more than {MAX_ENVS}", hint="each env is an emulator in memory")
    if config.total_steps < config.num_envs * config.num_steps:
        raise UsageError(f"--total-steps {config.total_steps} is less than one rollout "
                         f"(--num-envs x --num-steps = {config.num_envs * config.num_steps})")
    if config.run_name is not None and not RUN_NAME.fullmatch(config.run_name):
        raise UsageError(f"--run-name {config.run_name!r} is not a plain folder name",
                         hint="letters, digits, '.', '_' and '-'; runs live under --runs-dir")
    if not 0 < config.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {config.threshold}")
    if config.freeze_cnn and not config.load_cnn:
        raise UsageError("--freeze-cnn needs --load-cnn: a frozen random CNN sees no objects")
    if (config.num_envs * config.num_steps) % config.num_minibatches:
        raise UsageError(f"--num-envs x --num-steps must be divisible by --num-minibatches {config.num_minibatches}")


def _run_dir(config: TrainConfig, game_name: str) -> Path:
    runs = Path(config.runs_dir or Path("data") / game_name / "runs")
    if config.run_name:
        return runs / config.run_name
    if config.resume:
        existing = sorted(runs.glob("*/run.ckpt"), key=lambda path: path.stat().st_mtime)
        if not existing:
            raise InsightError(f"--resume: no run to resume in {runs}", hint="give --run-name or start without --resume")
        return existing[-1].parent
    return runs / datetime.now().strftime("%Y%m%d-%H%M%S")


def _plain(config: TrainConfig) -> dict:
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(config).items()}


def run(config: TrainConfig) -> TrainResult:
    _validate(config)
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
    if (run_dir / "run.ckpt").exists() and not (config.resume or config.force):
        raise InsightError(f"{run_dir} already holds a run",
                           hint="--resume continues it, --force replaces it, or choose another --run-name")
    ensure_writable(run_dir / "run.ckpt")
    created = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]  # deepest first
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        owner = lock.read_text().strip()
        if owner.isdigit() and process_alive(int(owner)):
            raise InsightError(f"another insight train (pid {owner}) is writing {run_dir}",
                               hint="wait for it, or choose another --run-name") from None
        lock.unlink(missing_ok=True)  # its train was killed
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        for folder in created:  # a train that saved nothing leaves no empty folders
            if any(folder.iterdir()):
                break
            folder.rmdir()


def _train(config: TrainConfig, game, device: torch.device, ranks: distributed.Ranks, run_dir: Path) -> TrainResult:
    game_dir = Path("data") / game.name
    checkpoint_path = run_dir / "run.ckpt"
    seed_everything(config.seed + ranks.rank)

    # Perception: the dataset fixes the object slots; a pretrained CNN must match them.
    dataset = load_dataset(Path(config.dataset or game_dir / "dataset"))
    if dataset.game != game.name:
        raise InsightError(f"{dataset.path} is a {dataset.game} dataset, not {game.name}", hint="check --game or --dataset")
    slots = choose_slots(dataset, "auto")
    perception_config = PerceptionConfig(n_objects=max(len(slots), 1), hidden=config.hidden, threshold=config.threshold)
    perception_state = None
    if config.load_cnn:
        perception_path = Path(config.perception or game_dir / "perception.ckpt")
        pretrained = load_checkpoint(perception_path, kind="perception")
        if pretrained.meta["game"] != game.name:
            raise InsightError(f"{perception_path} was trained for {pretrained.meta['game']}, not {game.name}")
        if pretrained.meta["dataset_fingerprint"] != dataset.meta["fingerprint"]:
            raise InsightError(
                f"{perception_path} was trained on another dataset than {dataset.path}",
                hint="pretrain again on this dataset, or pass the matching --dataset",
            )
        slots = [{"track_id": o["track_id"], "name": o["name"]} for o in pretrained.meta["objects"]]
        perception_config = replace(PerceptionConfig.from_dict(pretrained.config), threshold=config.threshold)
        perception_state = pretrained.state["model"]
    data = decode(dataset, slots, device)
    weights = object_weights(data.frequency)

    state_size = len(game.state) if config.ego_state else 0
    agent_config = AgentConfig(perception_config, len(game.action_names), config.n_layers, config.n_funcs, game.continuous,
                               state_size)
    agent = Agent(agent_config).to(device)
    if perception_state is not None:
        agent.perception.load_state_dict(perception_state)
    elif not config.resume:
        agent.perception.encoder.set_background(data.frames[1:])
    if not config.resume:  # a resumed run loads its own centre
        agent.centre_features(data.batch(_spread(data.train_rows, CENTRE_FRAMES))[0])
    distributed.broadcast_parameters(agent, ranks)
    groups = [{"params": agent.head_parameters(), "weight_decay": 0.0}]
    if config.freeze_cnn:
        agent.perception.requires_grad_(False)
    else:
        groups.append({"params": list(agent.perception.parameters()), "weight_decay": CNN_WEIGHT_DECAY})
    optimizer = torch.optim.Adam(groups, lr=config.lr, eps=1e-5)
    settings = PpoSettings(
        num_minibatches=config.num_minibatches, update_epochs=config.update_epochs, neural_guidance=config.ng,
        clip_coef=config.clip_coef, kl_coef=config.kl_coef,
        distill_weight=config.distill_weight, cnn_loss_weight=config.cnn_loss_weight,
    )
    env = make_vector_env(game, config.num_envs, seed=config.seed + ranks.rank * config.num_envs, mode="train")
    generator = torch.Generator(device=device).manual_seed(config.seed + ranks.rank)

    batch_per_update = config.num_envs * config.num_steps * ranks.world_size
    num_updates = max(1, config.total_steps // batch_per_update)
    eval_interval = max(1, round(num_updates * config.eval_every))
    meta = {
        "game": game.name,
        "action_meanings": game.action_names,
        "objects": [{"slot": index, "track_id": s["track_id"], "name": s["name"]} for index, s in enumerate(slots)],
        "dataset": str(dataset.path),
        "dataset_fingerprint": dataset.meta["fingerprint"],
        "frame_shape": dataset.meta.get("frame_shape"),
        "agent": {"n_objects": perception_config.n_objects, "hidden": perception_config.hidden,
                  "encoder": perception_config.encoder,
                  "threshold": config.threshold, "n_actions": agent_config.n_actions,
                  "n_layers": config.n_layers, "n_funcs": config.n_funcs, "continuous": game.continuous,
                  "state_size": state_size},
    }

    obs_shape = (config.num_steps, config.num_envs)
    rollout = Rollout(
        obs=torch.zeros(obs_shape + (4, 84, 84), dtype=torch.uint8, device=device),
        states=torch.zeros(obs_shape + (state_size,), device=device),
        actions=torch.zeros(obs_shape + (agent_config.n_actions,), device=device) if game.continuous
        else torch.zeros(obs_shape, dtype=torch.long, device=device),
        logprobs=torch.zeros(obs_shape, device=device),
        rewards=torch.zeros(obs_shape, device=device),
        dones=torch.zeros(obs_shape, device=device),
        values=torch.zeros(obs_shape, device=device),
    )
    next_obs = torch.from_numpy(env.reset()).to(device)
    next_state = _ego_state(env, state_size, device)
    next_done = torch.zeros(config.num_envs, device=device)
    episode_returns = np.zeros(config.num_envs)
    start_update, global_step, last_eval = 1, 0, {}
    logger_rows: list[dict] = []
    if config.resume:
        state = _restore(checkpoint_path, config, agent, optimizer, generator, env, meta)
        start_update, global_step, last_eval, logger_rows = (
            state["update"] + 1, state["global_step"], state["last_eval"], state["rows"]
        )
        next_obs = state["next_obs"].to(device)
        next_state = _ego_state(env, state_size, device)
        next_done = state["next_done"].to(device)
        episode_returns = np.array(state["episode_returns"])
    logger = MetricsLogger(run_dir, enabled=ranks.main, rows=logger_rows)

    def perception_refinement_loss() -> torch.Tensor:
        rows = data.train_rows[
            torch.randint(len(data.train_rows), (PERCEPTION_BATCH,), generator=generator, device=generator.device).to(device)
        ]
        stacks, targets = data.batch(rows)
        stacks, targets = shift_batch(stacks, targets, data.margins[rows], 8, generator)
        return perception_loss(agent.perception(stacks), targets, weights).total

    def save(update: int) -> None:
        """run.ckpt holds what the later stages need (the agent); run.resume.<update>.ckpt,
        written first, the optimizer, RNG and env state that only --resume needs. The resume
        file of the update before is removed only once run.ckpt is replaced, so a kill at any
        instant leaves a run.ckpt with its own resume file."""
        if not ranks.main:
            return
        run_meta = {**meta, "global_step": global_step, "update": update, "num_updates": num_updates, "last_eval": last_eval}
        resume_state = {
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "env": env.state() if hasattr(env, "state") else None,
            "next_obs": next_obs,
            "next_done": next_done,
            "episode_returns": episode_returns.tolist(),
            "update": update,
            "global_step": global_step,
            "last_eval": last_eval,
            "rows": logger.rows,
        }
        resume_path = _resume_path(checkpoint_path, update)
        save_checkpoint(resume_path, "run-resume", _plain(config), run_meta, resume_state)
        save_checkpoint(checkpoint_path, "run", _plain(config), run_meta, {"agent": agent.state_dict()})
        for stale in run_dir.glob("run.resume.*.ckpt"):
            if stale != resume_path:
                stale.unlink(missing_ok=True)

    recent_returns: deque[float] = deque(maxlen=20)  # the last finished training episodes
    started, steps_at_start, steps_per_second = time.perf_counter(), global_step, 0.0
    update = start_update - 1
    with _Stop.on_interrupt(), _progress(ranks.main) as progress:
        task = progress.add_task(f"train {game.name}", total=num_updates * batch_per_update, completed=global_step)
        for update in range(start_update, num_updates + 1):
            fraction_left = 1.0 - (update - 1.0) / num_updates
            for group in optimizer.param_groups:
                group["lr"] = fraction_left * config.lr
            reg_weight_now = config.reg_weight * (update - 1) / max(num_updates - 1, 1)

            perceived = []  # the rollout's perception outputs, kept for the update while it is frozen
            for step in range(config.num_steps):
                global_step += config.num_envs * ranks.world_size
                rollout.obs[step] = next_obs
                rollout.states[step] = next_state
                rollout.dones[step] = next_done
                with torch.no_grad():
                    out = agent(next_obs, next_state)
                    if config.freeze_cnn:
                        perceived.append(out.perception)
                    distribution = agent.policy(out, "neural" if config.ng else "eql")
                    action = distribution.sample()
                    rollout.values[step] = out.value.float()
                rollout.actions[step] = action
                rollout.logprobs[step] = distribution.log_prob(action)
                result = env.step((torch.tanh(action) if game.continuous else action).cpu().numpy())
                rollout.rewards[step] = torch.from_numpy(result.reward).to(device)
                next_obs = torch.from_numpy(result.obs).to(device)
                next_state = _ego_state(env, state_size, device)
                done = result.terminated | result.truncated
                next_done = torch.from_numpy(done.astype(np.float32)).to(device)
                episode_returns += result.reward
                for index in np.flatnonzero(done):
                    recent_returns.append(float(episode_returns[index]))
                    episode_returns[index] = 0.0

            with torch.no_grad():
                next_value = agent(next_obs, next_state).value.float()
            advantages, returns = compute_gae(
                rollout.rewards, rollout.values, rollout.dones, next_value, next_done, settings.gamma, settings.gae_lambda
            )
            stats = ppo_update(
                agent, optimizer, rollout, advantages, returns, settings, reg_weight_now,
                perception_refinement_loss if config.cnn_loss_weight > 0 and not config.freeze_cnn else None,
                lambda: distributed.average_gradients(agent, ranks), generator,
                PerceptionOutput(*(torch.cat(parts) for parts in zip(*perceived))) if perceived else None,
            )

            steps_per_second = (global_step - steps_at_start) / (time.perf_counter() - started)
            scalars = {f"losses/{name}": value for name, value in stats.items()}
            scalars.update({"charts/sps": steps_per_second, "charts/learning_rate": optimizer.param_groups[0]["lr"],
                            "charts/reg_weight": reg_weight_now})
            if recent_returns:
                scalars["train/episode_return"] = float(np.mean(recent_returns))
            if update % eval_interval == 0 or update == num_updates:
                last_eval = _evaluate(agent, game, data, weights, config, device, meta, update, ranks)
                scalars.update(last_eval)
            logger.log(global_step, scalars)
            progress.update(task, completed=global_step, description=_status(game.name, steps_per_second, recent_returns, last_eval))
            if update % eval_interval == 0 or update == num_updates or _Stop.requested:
                save(update)
            if _Stop.requested:
                break

    in_sync = distributed.parameters_in_sync(agent, ranks)
    if ranks.main:
        logger.write_table()
        logger.learning_curve(run_dir / "learning_curve.png")
        summary = {"checkpoint": str(checkpoint_path), "global_step": global_step, "updates": update,
                   "num_updates": num_updates, "steps_per_second": steps_per_second, "last_eval": last_eval,
                   "world_size": ranks.world_size, "ranks_in_sync": in_sync, "interrupted": _Stop.requested}
        write_atomically(run_dir / "result.json", json.dumps(summary, indent=2))
    logger.close()
    env.close()
    if _Stop.requested:
        raise KeyboardInterrupt
    return TrainResult(checkpoint_path, global_step, steps_per_second, last_eval, in_sync)


def _evaluate(agent, game, data, weights, config, device, meta, update, ranks) -> dict:
    """The EQL actor's raw return over full episodes, and the perception's test-split quality."""
    if not ranks.main:
        return {}
    agent.eval()
    scores = {}
    if config.eval_episodes:
        returns = play_episodes(agent_actor(agent, "eql"), game, config.eval_episodes, seed=config.seed + 100_003 * update,
                                device=device).returns
        scores["eval/eql_return"] = float(np.mean(returns)) if returns else float("nan")
    perception = evaluate_perception(agent.perception, data, weights, PERCEPTION_BATCH, False, meta["frame_shape"])
    scores.update({"perception/test_loss": perception["test_loss"], "perception/mae_x100": perception["mae_x100"],
                   "perception/existence_ap": perception["existence_ap"]})
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


def _restore(checkpoint_path: Path, config, agent, optimizer, generator, env, meta) -> dict:
    checkpoint = load_checkpoint(checkpoint_path, kind="run")
    saved = {key: value for key, value in checkpoint.config.items() if key not in UNCHECKED_ON_RESUME}
    now = {key: value for key, value in _plain(config).items() if key not in UNCHECKED_ON_RESUME}
    changed = sorted(key for key in now if saved.get(key) != now[key])
    if changed:
        raise InsightError(f"--resume: {checkpoint_path} was trained with other settings ({', '.join(changed)})",
                           hint="resume with the same options")
    resume_path = _resume_path(checkpoint_path, checkpoint.meta["update"])
    if not resume_path.exists():
        raise InsightError(f"--resume: {resume_path}, the resume state of {checkpoint_path}, is missing",
                           hint="it holds the optimizer and RNG state; without it, start again with --force")
    resume = load_checkpoint(resume_path, kind="run-resume").state
    if resume["update"] != checkpoint.meta["update"]:
        raise InsightError(f"--resume: {resume_path} does not belong to {checkpoint_path}",
                           hint="both are written by the same save; was one of them copied or replaced?")
    agent.load_state_dict(checkpoint.state["agent"])
    optimizer.load_state_dict(resume["optimizer"])
    generator.set_state(resume["generator"])
    torch.set_rng_state(resume["torch_rng"])
    if resume["cuda_rng"]:
        torch.cuda.set_rng_state_all(resume["cuda_rng"])
    if resume["env"] is not None and hasattr(env, "restore"):
        env.restore(resume["env"])
    else:  # the ALE vector env cannot save its emulators: episodes restart from a fresh seed
        resume = {**resume, "next_obs": torch.from_numpy(env.reset(seed=config.seed + 7919 * resume["update"])),
                  "next_done": torch.zeros_like(resume["next_done"]), "episode_returns": [0.0] * env.num_envs}
        console.print("[yellow]resume: this game's envs cannot be saved, so its episodes restart[/]")
    return resume


def _status(game: str, steps_per_second: float, returns: list[float], last_eval: dict) -> str:
    parts = [f"train {game}", f"{steps_per_second:,.0f} SPS"]
    if returns:
        parts.append(f"return {np.mean(returns):.1f}")
    if "eval/eql_return" in last_eval:
        parts.append(f"EQL {last_eval['eval/eql_return']:.1f}")
    return " | ".join(parts)


@contextmanager
def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, disable=not enabled)
    with progress:
        yield progress
