"""The state of a training run between updates, and how it is saved and resumed: where the
envs are (`EnvCursor`) and everything else a run needs to continue (`RunState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from insight_cli import paths
from insight_cli.checkpoint import load_checkpoint, plain_config, save_checkpoint
from insight_cli.envs import ego_states
from insight_cli.errors import InsightError
from insight_cli.progress import console
from insight_cli.train.agent import Agent
from insight_cli.train.config import TrainConfig
from insight_cli.train.dagger import BestEql

UNCHECKED_ON_RESUME = ("resume", "run_name", "force")  # options a resumed run may change


@dataclass
class EnvCursor:
    """Where the envs are between rollouts: the next observation and ego state, whether it
    starts an episode, and each env's return so far (saved with a run, for --resume)."""

    obs: torch.Tensor  # (N, 4, 84, 84) uint8
    state: torch.Tensor  # (N, S)
    done: torch.Tensor  # (N,) 1.0 where obs starts a new episode
    episode_returns: np.ndarray  # (N,)

    @classmethod
    def start(cls, env, state_size: int, device: torch.device) -> EnvCursor:
        """The envs just reset: every observation starts an episode with nothing scored yet."""
        obs, states = torch.from_numpy(env.reset()).to(device), observed_states(env, state_size, device)
        return cls(obs, states, torch.zeros(env.num_envs, device=device), np.zeros(env.num_envs))


@dataclass
class RunState:
    """What a run saves and --resume restores: the agent, its optimizer, the RNGs, where the
    envs are, and how far training got. run.ckpt holds what the later stages need (the agent);
    run.resume.<update>.ckpt the rest, which only --resume needs."""

    run_dir: Path
    config: TrainConfig
    meta: dict
    agent: Agent
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    env: object
    cursor: EnvCursor
    main: bool = True  # only the main rank writes
    update: int = 0  # the last update done
    global_step: int = 0
    last_eval: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # the metrics logged so far (a resumed run's)
    best_eql: BestEql = field(default_factory=BestEql)  # the DAgger phase's best EQL actor so far

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / paths.RUN_CHECKPOINT

    def _resume_path(self, update: int) -> Path:
        return self.checkpoint_path.with_name(f"run.resume.{update}.ckpt")

    def save(self, rows: list[dict]) -> None:
        """The resume file is written first, and the one of the update before is removed only
        once run.ckpt is replaced, so a kill at any instant leaves a run.ckpt with its own
        resume file."""
        if not self.main:
            return
        progress = {"global_step": self.global_step, "update": self.update, "last_eval": self.last_eval}
        device = self.cursor.obs.device
        resume_state = {
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "env": self.env.state() if hasattr(self.env, "state") else None,
            "next_obs": self.cursor.obs,
            "next_done": self.cursor.done,
            "episode_returns": self.cursor.episode_returns.tolist(),
            "rows": rows,
            "best_eql": self.best_eql.to_dict(),
            **progress,
        }
        config, meta = plain_config(self.config), {**self.meta, **progress}
        resume_path = self._resume_path(self.update)
        save_checkpoint(resume_path, "run-resume", config, meta, resume_state)
        save_checkpoint(self.checkpoint_path, "run", config, meta, {"agent": self.agent.state_dict()})
        for stale in self.run_dir.glob("run.resume.*.ckpt"):
            if stale != resume_path:
                stale.unlink(missing_ok=True)

    def restore(self) -> None:
        """Continue the run saved in run_dir: refused if it was trained with other settings or
        its resume file is missing or not its own."""
        checkpoint_path = self.checkpoint_path
        checkpoint = load_checkpoint(checkpoint_path, kind="run")
        changed = changed_settings(checkpoint.config, self.config)
        if changed:
            raise InsightError(
                f"--resume: {checkpoint_path} was trained with other settings ({', '.join(changed)})",
                hint="resume with the same options",
            )
        resume_path = self._resume_path(checkpoint.meta["update"])
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
        self.agent.load_state_dict(checkpoint.state["agent"])
        self.optimizer.load_state_dict(resume["optimizer"])
        self.generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        if resume["cuda_rng"]:
            torch.cuda.set_rng_state_all(resume["cuda_rng"])
        device = self.cursor.obs.device
        if resume["env"] is not None and hasattr(self.env, "restore"):
            self.env.restore(resume["env"])
            obs, done, returns = resume["next_obs"], resume["next_done"], resume["episode_returns"]
        else:  # the ALE vector env cannot save its emulators: episodes restart from a fresh seed
            obs = torch.from_numpy(self.env.reset(seed=self.config.seed + 7919 * resume["update"]))
            done, returns = torch.zeros_like(resume["next_done"]), [0.0] * self.env.num_envs
            console.print("[yellow]resume: this game's envs cannot be saved, so its episodes restart[/]")
        state_size = self.cursor.state.shape[1]
        self.cursor = EnvCursor(
            obs.to(device), observed_states(self.env, state_size, device), done.to(device), np.array(returns)
        )
        self.update, self.global_step = resume["update"], resume["global_step"]
        self.last_eval, self.rows = resume["last_eval"], resume["rows"]
        self.best_eql = BestEql.from_dict(resume.get("best_eql"))  # runs saved before it have none


def changed_settings(saved: dict, config: TrainConfig) -> list[str]:
    """The options of `config` that differ from a checkpoint's `saved` config, apart from those
    a resumed run may change: empty when the run can be resumed with `config`."""
    now = {key: value for key, value in plain_config(config).items() if key not in UNCHECKED_ON_RESUME}
    return sorted(key for key in now if saved.get(key) != now[key])


def observed_states(env, state_size: int, device: torch.device) -> torch.Tensor:
    """(N, S) the envs' current ego states, (N, 0) when the agent takes none."""
    return ego_states(env, device) if state_size else torch.zeros((env.num_envs, 0), device=device)
