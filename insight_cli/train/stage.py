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
from insight_cli.checkpoint import load_checkpoint
from insight_cli.dataset import load_dataset
from insight_cli.envs import make_vector_env
from insight_cli.errors import InsightError
from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.files import ensure_writable, process_alive, write_atomically
from insight_cli.games import get_game
from insight_cli.perception.data import choose_slots, decode, shift_batch, slot_entries, slots_of
from insight_cli.perception.losses import object_weights, perception_loss
from insight_cli.perception.model import PerceptionConfig, PerceptionOutput, zero_negligible_weights
from insight_cli.pretrain.metrics import evaluate as evaluate_perception
from insight_cli.progress import console, progress_bar
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train import distributed
from insight_cli.train.agent import Agent, AgentConfig
from insight_cli.train.config import TrainConfig
from insight_cli.train.dagger import EVALUATIONS, DaggerMemory, dagger_update
from insight_cli.train.logger import MetricsLogger
from insight_cli.train.ppo import PpoSettings, Rollout, compute_gae, ppo_update
from insight_cli.train.run_state import EnvCursor, RunState, observed_states

PERCEPTION_BATCH = 32
CENTRE_FRAMES = 1024  # dataset stacks the heads' feature centre and scale are measured on
CNN_WEIGHT_DECAY = 1e-4
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
    optimizer = torch.optim.Adam(groups, lr=config.lr, eps=1e-5)
    if not config.freeze_cnn:  # its weight decay would push weights into the slow denormal range
        optimizer.register_step_post_hook(lambda *_: zero_negligible_weights(agent.perception))
    return optimizer


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


@dataclass(frozen=True)
class Plan:
    """How many updates a run makes, how many of them are PPO and how many DAgger, and how
    often it evaluates and saves."""

    batch_per_update: int  # env steps of one update, over every rank
    num_updates: int
    ppo_updates: int
    dagger_updates: int
    eval_interval: int
    dagger_eval_interval: int  # DAgger evaluates more often: each evaluation offers a best EQL actor

    @classmethod
    def of(cls, config: TrainConfig, world_size: int) -> Plan:
        batch_per_update = config.num_envs * config.num_steps * world_size
        num_updates = max(1, config.total_steps // batch_per_update)
        # PPO for the first updates; in the last ones (DAgger) the EQL actor plays greedily and
        # learns the neural actor's choices on the states it reaches itself.
        dagger_updates = min(num_updates - 1, round(num_updates * config.dagger_share))
        eval_interval = max(1, round(num_updates * config.eval_every))
        dagger_eval_interval = max(1, min(eval_interval, dagger_updates // EVALUATIONS))
        return cls(
            batch_per_update,
            num_updates,
            num_updates - dagger_updates,
            dagger_updates,
            eval_interval,
            dagger_eval_interval,
        )

    def evaluates(self, update: int) -> bool:
        """Whether update number `update` ends with an evaluation and a checkpoint. The last PPO
        update is one when a DAgger phase follows: the EQL actor the phase starts from is measured,
        and a resumable checkpoint is left from which the phase can be run again."""
        if update == self.num_updates or (self.dagger_updates and update == self.ppo_updates):
            return True
        if update > self.ppo_updates:
            return (update - self.ppo_updates) % self.dagger_eval_interval == 0
        return update % self.eval_interval == 0


def _agent(config: TrainConfig, game, dataset, device: torch.device, ranks: distributed.Ranks):
    """The agent (its perception pretrained or started on the dataset's background), the
    dataset decoded for its slots, the perception loss's object weights, and the run's meta."""
    slots, perception_config, perception_state = _perception(config, game, dataset)
    data = decode(dataset, slots, device)
    state_size = len(game.state) if config.ego_state else 0
    agent_config = AgentConfig(
        perception_config, len(game.action_names), config.n_layers, config.n_funcs, game.continuous, state_size
    )
    agent = Agent(agent_config).to(device)
    if perception_state is not None:
        agent.perception.load_state_dict(perception_state)
    elif not config.resume:
        agent.perception.encoder.set_background(data.frames[1:])
    if not config.resume:  # a resumed run loads its own centre and scale
        agent.standardise_features(data.batch(_spread(data.train_rows, CENTRE_FRAMES))[0])
    distributed.broadcast_parameters(agent, ranks)
    meta = {
        "game": game.name,
        "action_meanings": game.action_names,
        "objects": slot_entries(slots),
        "dataset": str(dataset.path),
        "dataset_fingerprint": dataset.meta["fingerprint"],
        "frame_shape": dataset.meta.get("frame_shape"),
        "agent": agent_config.to_dict(),
    }
    return agent, data, object_weights(data.frequency), meta


def _ppo_settings(config: TrainConfig, game) -> PpoSettings:
    return PpoSettings(
        num_minibatches=config.num_minibatches,
        update_epochs=config.update_epochs,
        neural_guidance=config.ng,
        clip_coef=config.clip_coef,
        kl_coef=config.kl_coef,
        distill_weight=config.distill_weight,
        cnn_loss_weight=config.cnn_loss_weight,
        effects=None if game.continuous else tuple(int(index) for index in game.effects),
    )


def _refinement_loss(agent: Agent, data, weights, generator: torch.Generator) -> torch.Tensor:
    """The perception loss on a batch of dataset stacks, shifted as in pretraining: what keeps
    the coordinates grounded while RL and guidance gradients move the CNN."""
    draw = torch.randint(len(data.train_rows), (PERCEPTION_BATCH,), generator=generator, device=generator.device)
    rows = data.train_rows[draw.to(data.train_rows.device)]
    stacks, targets = data.batch(rows)
    stacks, targets = shift_batch(
        stacks, targets, data.margins[rows], 8, generator, agent.perception.encoder.background
    )
    return perception_loss(agent.perception(stacks), targets, weights).total


def _train(config: TrainConfig, game, device: torch.device, ranks: distributed.Ranks, run_dir: Path) -> TrainResult:
    seed_everything(config.seed + ranks.rank)
    dataset = load_dataset(Path(config.dataset or paths.dataset_dir(game.name)))
    if dataset.game != game.name:
        raise InsightError(
            f"{dataset.path} is a {dataset.game} dataset, not {game.name}", hint="check --game or --dataset"
        )
    agent, data, weights, meta = _agent(config, game, dataset, device, ranks)
    plan = Plan.of(config, ranks.world_size)
    settings = _ppo_settings(config, game)
    env_seed = config.seed + ranks.rank * config.num_envs
    env = make_vector_env(game, config.num_envs, seed=env_seed, mode="train")
    generator = torch.Generator(device=device).manual_seed(config.seed + ranks.rank)
    run = RunState(
        run_dir=run_dir,
        config=config,
        meta={**meta, "num_updates": plan.num_updates},
        agent=agent,
        optimizer=_optimizer(agent, config),
        generator=generator,
        env=env,
        cursor=EnvCursor.start(env, agent.config.state_size, device),
        main=ranks.main,
    )
    if config.resume:
        run.restore()
    logger = MetricsLogger(run_dir, enabled=ranks.main, rows=run.rows)
    rollout = _rollout_buffer(config, agent.config, device)
    memory = DaggerMemory()  # not saved: a resumed DAgger phase starts a new memory
    refine = config.cnn_loss_weight > 0 and not config.freeze_cnn
    learn = partial(
        _learn,
        run,
        rollout,
        memory,
        settings,
        reduce_gradients=partial(distributed.average_gradients, agent, ranks),
        perception_loss_fn=partial(_refinement_loss, agent, data, weights, generator) if refine else None,
    )

    recent_returns: deque[float] = deque(maxlen=20)  # the last finished training episodes
    started, steps_at_start, steps_per_second = time.perf_counter(), run.global_step, 0.0
    with _Stop.on_interrupt(), progress_bar("env steps", ranks.main) as progress:
        total = plan.num_updates * plan.batch_per_update
        task = progress.add_task(
            f"train {game.name}", total=total, completed=run.global_step, done_before=run.global_step
        )
        sticky = False  # whether run.env is the DAgger phase's
        for update in range(run.update + 1, plan.num_updates + 1):
            imitating, lr, reg_weight_now = schedule(update, plan, config.lr, config.reg_weight)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            if imitating and not sticky:
                # The DAgger phase plays with sticky actions, as evaluation does (mode "imitate"):
                # new envs from a reset, and the returns from here on are the EQL actor's.
                run.env.close()
                run.env = make_vector_env(game, config.num_envs, seed=env_seed, mode="imitate")
                sticky = True
                run.cursor = EnvCursor.start(run.env, agent.config.state_size, device)
                recent_returns.clear()
            actor = "eql" if imitating or not config.ng else "neural"
            perceived = collect_rollout(
                agent,
                run.env,
                rollout,
                run.cursor,
                recent_returns,
                actor,
                greedy=imitating,
                keep_perception=config.freeze_cnn,
            )
            run.update, run.global_step = update, run.global_step + plan.batch_per_update
            stats = learn(imitating=imitating, reg_weight_now=reg_weight_now, perceived=perceived)

            steps_per_second = (run.global_step - steps_at_start) / (time.perf_counter() - started)
            scalars = {f"losses/{name}": value for name, value in stats.items()}
            scalars.update(
                {"charts/sps": steps_per_second, "charts/learning_rate": lr, "charts/reg_weight": reg_weight_now}
            )
            if recent_returns:
                curve = "train/eql_episode_return" if imitating else "train/episode_return"
                scalars[curve] = float(np.mean(recent_returns))
            checkpoint_due = plan.evaluates(update)
            if checkpoint_due:
                run.last_eval = _evaluate(agent, game, data, weights, config, device, meta, update, ranks)
                scalars.update(run.last_eval)
                if imitating:
                    run.best_eql.offer(run.last_eval, update, agent.eql)
            if imitating and update == plan.num_updates:
                _end_with_best_eql(run, ranks)
            logger.log(run.global_step, scalars)
            status = _status(game.name, recent_returns, run.last_eval, imitating)
            progress.update(task, completed=run.global_step, description=status)
            if checkpoint_due or _Stop.requested:
                run.save(logger.rows)
            if _Stop.requested:
                break

    in_sync = distributed.parameters_in_sync(agent, ranks)  # a collective: every rank takes part
    if ranks.main:
        logger.write_table()
        logger.learning_curve(run_dir / "learning_curve.png")
        summary = {
            "checkpoint": str(run.checkpoint_path),
            "global_step": run.global_step,
            "updates": run.update,
            "num_updates": plan.num_updates,
            "steps_per_second": steps_per_second,
            "last_eval": run.last_eval,
            "dagger_best_update": run.best_eql.update or None,
            "world_size": ranks.world_size,
            "ranks_in_sync": in_sync,
            "interrupted": _Stop.requested,
        }
        write_atomically(run_dir / "result.json", json.dumps(summary, indent=2))
    logger.close()
    run.env.close()
    if _Stop.requested:
        raise KeyboardInterrupt
    return TrainResult(run.checkpoint_path, run.global_step, steps_per_second, run.last_eval)


def _end_with_best_eql(run: RunState, ranks: distributed.Ranks) -> None:
    """The run ends with the DAgger phase's best EQL actor: the main rank (the one that
    evaluates) puts it back and every rank takes the weights from there (a collective)."""
    if run.best_eql.restore(run.agent.eql):
        run.last_eval = run.best_eql.scores
    distributed.broadcast_parameters(run.agent, ranks)


def _learn(
    run: RunState,
    rollout: Rollout,
    memory: DaggerMemory,
    settings: PpoSettings,
    imitating: bool,
    reg_weight_now: float,
    perceived: PerceptionOutput | None,
    reduce_gradients,
    perception_loss_fn,
) -> dict[str, float]:
    """One update on the rollout just collected: DAgger (the EQL actor alone learns the neural
    actor's choices) or PPO with neural guidance; returns its statistics."""
    common = dict(
        agent=run.agent,
        optimizer=run.optimizer,
        rollout=rollout,
        settings=settings,
        reduce_gradients=reduce_gradients,
        generator=run.generator,
        perceived=perceived,
    )
    if imitating:
        return dagger_update(**common, memory=memory, reg_weight=reg_weight_now)
    with torch.no_grad():
        next_value = run.agent(run.cursor.obs, run.cursor.state).value.float()
    advantages, returns = compute_gae(
        rollout.rewards,
        rollout.values,
        rollout.dones,
        next_value,
        run.cursor.done,
        settings.gamma,
        settings.gae_lambda,
    )
    return ppo_update(
        **common,
        advantages=advantages,
        returns=returns,
        reg_weight_now=reg_weight_now,
        perception_loss_fn=perception_loss_fn,
    )


def schedule(update: int, plan: Plan, lr: float, reg_weight: float):
    """For update number `update` (from 1): whether it is a DAgger update, its learning rate
    and the sparsity weight (rising linearly to `reg_weight` over the PPO updates, then held).
    The rate is annealed linearly from `lr` to 0 over the PPO updates, and again over the DAgger
    updates: the phase's memory is the same teacher's labels throughout, so a rate that falls
    should let the EQL actor settle (on Pong, at a held rate its 4-game evaluations swung between
    -21 and -5.5 to the end in run 11; annealed, still -21 to -2.5 to the end in run 12)."""
    imitating = update > plan.ppo_updates
    if imitating:
        fraction_left = 1.0 - (update - plan.ppo_updates - 1.0) / plan.dagger_updates
    else:
        fraction_left = 1.0 - (update - 1.0) / plan.ppo_updates
    return imitating, fraction_left * lr, reg_weight * min(1.0, (update - 1) / max(plan.ppo_updates - 1, 1))


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
        cursor.state = observed_states(env, cursor.state.shape[1], device)
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


def _spread(rows: torch.Tensor, count: int) -> torch.Tensor:
    """At most `count` of `rows`, evenly spaced (the same on every rank)."""
    return rows[torch.linspace(0, len(rows) - 1, min(count, len(rows)), device=rows.device).long()]


def _status(game: str, returns: list[float], last_eval: dict, imitating: bool) -> str:
    parts = [f"train {game}" + (" (DAgger)" if imitating else "")]
    if returns:
        parts.append(f"{'EQL plays' if imitating else 'return'} {np.mean(returns):.1f}")
    if "eval/eql_return" in last_eval:
        parts.append(f"EQL {last_eval['eval/eql_return']:.1f}")
    return " | ".join(parts)
