"""`insight train`'s options (no heavy imports: the CLI reads them at start)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.options import check_bounds, device_option, game_option, option, seed_option

MAX_ENVS = 1024
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


@dataclass
class TrainConfig:
    game: str = game_option()
    load_cnn: bool = option(False, "Start the perception CNN from `insight pretrain`'s checkpoint (else random).")
    freeze_cnn: bool = option(
        False, "Keep the loaded CNN fixed: no RL, guidance or refinement updates (faster; the cpu preset)."
    )
    perception: Path | None = option(
        None, "Perception checkpoint for --load-cnn (default: data/<Game>/perception.ckpt)."
    )
    dataset: Path | None = option(
        None, "Segment dataset for object slots and perception refinement (default: data/<Game>/dataset)."
    )
    total_steps: int = option(10_000_000, "Env steps in all (each is 4 frames), over all envs and ranks.", min=1)
    num_envs: int = option(8, "Parallel envs per process.", min=1, max=MAX_ENVS)
    num_steps: int = option(128, "Steps per env per rollout.", min=1)
    num_minibatches: int = option(4, "Minibatches each rollout is split into.", min=1)
    update_epochs: int = option(4, "Passes over each rollout.", min=1)
    lr: float = option(2.5e-4, "Adam learning rate, annealed linearly to 0.", above=0.0)
    ng: bool = option(
        True,
        "Neural guidance: the neural actor acts and the EQL actor imitates it; --no-ng trains the EQL actor by PPO "
        "directly.",
        flags=("--ng/--no-ng",),
    )
    reg_weight: float = option(
        1e-3, "Final weight of the EQL sparsity penalty (ramped up from 0; paper: 1e-3).", min=0.0
    )
    clip_coef: float = option(0.1, "PPO clipping range (paper: 0.1 on Atari, 0.2 on MetaDrive).", min=0.0)
    kl_coef: float = option(0.0, "Weight of a KL penalty on each policy change (paper's MetaDrive runs: 0.2).", min=0.0)
    ego_state: bool = option(
        True,
        "MetaDrive: give the ego state (speed, heading, lane position, ...) to the actors and the critic next to the "
        "pixels.",
        flags=("--ego-state/--no-ego-state",),
    )
    n_funcs: int = option(4, "EQL primitives: each is repeated 2 x n-funcs times.", min=1)
    n_layers: int = option(1, "EQL symbolic layers.", min=1)
    cnn_loss_weight: float = option(
        2.0, "Weight of the perception loss on dataset batches (0: no refinement).", min=0.0
    )
    distill_weight: float = option(1.0, "Weight of the EQL actor's imitation of the neural actor.", min=0.0)
    dagger_share: float = option(
        0.0,
        "Last share of --total-steps in which PPO stops and the EQL actor plays greedily and learns the neural "
        "actor's choices on the states it reaches (DAgger; the cpu preset: 0.1).",
        min=0.0,
        max=0.99,
    )
    threshold: float = option(0.5, "Existence probability above which an object's coordinates reach the EQL actor.")
    eval_episodes: int = option(
        10, "Full episodes to evaluate the EQL actor on, every --eval-every of training.", min=0
    )
    eval_every: float = option(
        0.01, "Fraction of training between evaluations and checkpoints (0.01: every 1%).", above=0.0, max=1.0
    )
    run_name: str | None = option(None, "Run directory name under data/<Game>/runs (default: a timestamp).")
    resume: bool = option(False, "Continue --run-name (or the latest run) from its checkpoint.")
    force: bool = option(False, "Replace the run already under --run-name (else refused).")
    device: str = device_option()
    seed: int = seed_option()
    runs_dir: Path | None = None  # default: data/<Game>/runs
    hidden: int = 2048  # perception width when not loading a CNN

    def validate(self) -> None:
        check_bounds(self)
        if self.hidden < 1:
            raise UsageError(f"hidden must be at least 1, got {self.hidden}")
        if self.dagger_share and not self.ng:
            raise UsageError(
                "--dagger-share needs neural guidance: without it no neural actor learns to imitate",
                hint="drop --no-ng or --dagger-share",
            )
        if self.total_steps < self.num_envs * self.num_steps:
            raise UsageError(
                f"--total-steps {self.total_steps} is less than one rollout "
                f"(--num-envs x --num-steps = {self.num_envs * self.num_steps})"
            )
        if self.run_name is not None and not RUN_NAME.fullmatch(self.run_name):
            raise UsageError(
                f"--run-name {self.run_name!r} is not a plain folder name",
                hint="letters, digits, '.', '_' and '-'; runs live under --runs-dir",
            )
        if not 0 < self.threshold < 1:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold}")
        if self.freeze_cnn and not self.load_cnn:
            raise UsageError("--freeze-cnn needs --load-cnn: a frozen random CNN sees no objects")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise UsageError(f"--num-envs x --num-steps must be divisible by --num-minibatches {self.num_minibatches}")
