"""`insight pipeline`: segment -> pretrain -> train -> extract-policy -> evaluate -> explain
on one game with one budget preset, skipping stages whose outputs are up to date.

A stage is up to date when its output exists, is newer than the outputs it was made from, and
`data/<Game>/pipeline.json` records that it was made with the same settings. An interrupted
train stage resumes. (extract-policy runs before evaluate: the symbolic actor plays the
exported policy.)
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from insight_cli import paths
from insight_cli.evaluate.config import ACTORS
from insight_cli.explain.config import (
    base_url_option,
    check_token_budget,
    context_tokens_option,
    llm_option,
    max_tokens_option,
    retries_option,
    timeout_option,
)
from insight_cli.files import write_atomically
from insight_cli.games import get_game
from insight_cli.options import check_bounds, device_option, game_option, option, seed_option
from insight_cli.progress import console

STAGES = ("segment", "pretrain", "train", "extract-policy", "evaluate", "explain")


@dataclass(frozen=True)
class Preset:
    """Budgets for every stage; `paper` is the paper's settings."""

    frames: int  # segment
    epochs: int  # pretrain
    total_steps: int  # train, env steps
    num_steps: int
    eval_episodes: int  # train's periodic EQL evaluation
    eval_every: float
    episodes: int  # evaluate, per actor (extract-policy plays its own default 2 rollouts per measured policy)
    max_terms: int | None  # extract-policy
    decisions: int  # explain
    hidden: int = 2048  # perception CNN width (pretrain)
    encoder: str = "insight"  # perception convolutions (pretrain)
    min_seen: float = 0.0  # share of frames a track needs for an object slot (pretrain)
    freeze_cnn: bool = False  # train: keep the pretrained perception fixed
    num_envs: int = 8  # train
    lr: float = 2.5e-4  # train
    dagger_share: float = 0.0  # train: the last share of training in which the EQL actor plays and imitates
    n_layers: int = 1  # train: EQL symbolic layers
    reg_weight: float = 1e-3  # train: final weight of the EQL sparsity penalty


# The paper's MetaDrive training settings, used for continuous-action games on every preset:
# 8 envs x 125 steps, 10 minibatches, KL penalty 0.2, and the EQL actor collects the data.
DRIVING = {
    "lr": 5e-5,
    "clip_coef": 0.2,
    "num_envs": 8,
    "num_steps": 125,
    "num_minibatches": 10,
    "kl_coef": 0.2,
    "reg_weight": 1e-4,
    "ng": False,
    "dagger_share": 0.0,  # the EQL actor collects the data itself: no neural actor to imitate
    "n_layers": 1,
}

PRESETS = {
    "demo": Preset(
        frames=2000,
        epochs=3,
        total_steps=2048,
        num_steps=32,
        eval_episodes=1,
        eval_every=0.5,
        episodes=2,
        max_terms=8,
        decisions=2,
    ),
    "quick": Preset(
        frames=10_000,
        epochs=10,
        total_steps=500_000,
        num_steps=128,
        eval_episodes=5,
        eval_every=0.05,
        episodes=5,
        max_terms=10,
        decisions=3,
    ),
    # Designed by measurement for a 2-core CPU (README, "the cpu preset"): the DQN-style encoder
    # (10x faster than the paper's), 256 wide, frozen after pretraining so the CNN runs once per
    # env step, and slots only for objects seen in 10% of the frames (Pong: 5 instead of 86).
    # The last 10% of training is DAgger: the EQL actor plays and learns the neural actor's
    # choices on its own states (imitating on the neural actor's states alone, it lost 21-0),
    # and the EQL actor has two layers: imitating a +19.6 neural actor by DAgger on the same
    # coordinates, one layer stayed at -21 (with or without the penalty), two reached +17.5.
    "cpu": Preset(
        frames=10_000,
        epochs=40,
        total_steps=5_000_000,
        num_steps=128,
        eval_episodes=4,
        eval_every=0.05,
        episodes=10,
        max_terms=10,
        decisions=3,
        hidden=256,
        encoder="nature",
        min_seen=0.1,
        freeze_cnn=True,
        dagger_share=0.1,
        n_layers=2,
        reg_weight=1e-4,
    ),
    "paper": Preset(
        frames=10_000,
        epochs=30,
        total_steps=10_000_000,
        num_steps=128,
        eval_episodes=10,
        eval_every=0.01,
        episodes=10,
        max_terms=None,
        decisions=3,
    ),
}


@dataclass
class PipelineConfig:
    game: str = game_option()
    preset: str = option(
        "demo",
        "Budgets: demo (minutes on a CPU), cpu (a real result on a 2-core CPU: 5M env steps, frozen fast perception, "
        "DAgger at the end), quick (an hour or so on a GPU), paper (the paper's settings: 10M env steps).",
        choices=tuple(PRESETS),
    )
    force: bool = option(False, "Redo every stage, even those whose outputs are up to date.")
    llm: str = llm_option()
    base_url: str | None = base_url_option()
    timeout: float = timeout_option()
    retries: int = retries_option()
    max_tokens: int = max_tokens_option()
    context_tokens: int = context_tokens_option()
    epochs: int | None = option(None, "Pretrain for this many epochs instead of the preset's.", min=1)
    total_steps: int | None = option(None, "Train for this many env steps instead of the preset's.", min=1)
    lr: float | None = option(
        None, "Train with this learning rate instead of the preset's (2.5e-4; MetaDrive 5e-5).", above=0.0
    )
    device: str = device_option()
    seed: int = seed_option()

    def validate(self) -> None:
        check_bounds(self)
        check_token_budget(self.max_tokens, self.context_tokens)


@dataclass
class PipelineResult:
    ran: list[str]
    skipped: list[str]
    scores: dict  # actor -> evaluate summary
    policy: dict  # terms per action, fidelity
    explanation: Path
    faithfulness: dict


def _newer(output: Path, *inputs: Path) -> bool:
    return output.exists() and all(
        output.stat().st_mtime >= source.stat().st_mtime for source in inputs if source.exists()
    )


def run(config: PipelineConfig) -> PipelineResult:
    config.validate()
    from insight_cli.evaluate.stage import EvaluateConfig
    from insight_cli.evaluate.stage import run as evaluate
    from insight_cli.explain.stage import ExplainConfig
    from insight_cli.explain.stage import run as explain
    from insight_cli.extract_policy.stage import ExtractConfig
    from insight_cli.extract_policy.stage import run as extract
    from insight_cli.pretrain.stage import PretrainConfig
    from insight_cli.pretrain.stage import run as pretrain
    from insight_cli.segment.stage import SegmentConfig
    from insight_cli.segment.stage import run as segment
    from insight_cli.train.stage import TrainConfig
    from insight_cli.train.stage import run as train

    game = get_game(config.game)
    preset = PRESETS[config.preset]
    run_dir = paths.runs_dir(game.name) / config.preset
    dataset, perception = paths.dataset_dir(game.name), paths.perception_checkpoint(game.name)
    checkpoint = run_dir / paths.RUN_CHECKPOINT
    manifest_path = paths.game_dir(game.name) / "pipeline.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() and not config.force else {}
    common = {"device": config.device, "seed": config.seed}
    training = {
        "num_steps": preset.num_steps,
        "num_envs": preset.num_envs,
        "freeze_cnn": preset.freeze_cnn,
        "lr": preset.lr,
        "total_steps": preset.total_steps,
        "dagger_share": preset.dagger_share,
        "n_layers": preset.n_layers,
        "reg_weight": preset.reg_weight,
        **(DRIVING if game.continuous else {}),
    }
    training.update({name: value for name, value in (("lr", config.lr), ("total_steps", config.total_steps)) if value})
    configs = {
        "segment": SegmentConfig(game=game.name, frames=preset.frames, out=dataset, **common),
        "pretrain": PretrainConfig(
            game=game.name,
            dataset=dataset,
            out=perception,
            epochs=config.epochs or preset.epochs,
            hidden=preset.hidden,
            encoder=preset.encoder,
            min_seen=preset.min_seen,
            **common,
        ),
        "train": TrainConfig(
            game=game.name,
            load_cnn=True,
            perception=perception,
            dataset=dataset,
            runs_dir=paths.runs_dir(game.name),
            run_name=config.preset,
            force=True,
            eval_episodes=preset.eval_episodes,
            eval_every=preset.eval_every,
            **training,
            **common,
        ),
        "extract-policy": ExtractConfig(checkpoint=checkpoint, max_terms=preset.max_terms, **common),
        "evaluate": [
            EvaluateConfig(
                checkpoint=checkpoint, actor=actor, episodes=preset.episodes, video=actor == "symbolic", **common
            )
            for actor in ACTORS
        ],
        "explain": ExplainConfig(
            checkpoint=checkpoint,
            llm=config.llm,
            decisions=preset.decisions,
            base_url=config.base_url,
            timeout=config.timeout,
            retries=config.retries,
            max_tokens=config.max_tokens,
            context_tokens=config.context_tokens,
            **common,
        ),
    }
    outputs = {
        "segment": (dataset / "dataset.json", []),
        "pretrain": (perception, [dataset / "dataset.json"]),
        "train": (checkpoint, [perception]),
        "extract-policy": (run_dir / "policy.json", [checkpoint]),
        "evaluate": (run_dir / "evaluation" / "symbolic.json", [run_dir / "policy.json"]),
        "explain": (run_dir / "explanation.json", [run_dir / "policy.json"]),
    }

    def settings(stage: str) -> str:
        value = configs[stage]
        return json.dumps(
            [asdict(c) for c in value] if isinstance(value, list) else asdict(value), default=str, sort_keys=True
        )

    runners = {
        "segment": segment,
        "pretrain": pretrain,
        "train": train,
        "extract-policy": extract,
        "evaluate": evaluate,
        "explain": explain,
    }
    ran, skipped, stale = [], [], False
    for number, stage in enumerate(STAGES, start=1):
        output, inputs = outputs[stage]
        same = manifest.get(stage) == settings(stage)
        resume = stage == "train" and not stale and _unfinished(checkpoint, configs["train"])
        if not stale and same and not resume and _newer(output, *inputs):
            skipped.append(stage)
            console.rule(f"[{number}/{len(STAGES)}] {stage}: up to date")
            continue
        stale = True  # everything after a stage that runs is redone
        console.rule(f"[{number}/{len(STAGES)}] {stage}" + (" (resuming)" if resume else ""))
        value = replace(configs[stage], resume=True) if resume else configs[stage]
        started = time.perf_counter()
        for stage_config in value if isinstance(value, list) else [value]:
            runners[stage](stage_config)
        manifest[stage] = settings(stage)
        manifest.setdefault("seconds", {})[stage] = round(time.perf_counter() - started, 1)  # the last run of each
        write_atomically(manifest_path, json.dumps(manifest, indent=2))
        ran.append(stage)

    scores = {actor: json.loads((run_dir / "evaluation" / f"{actor}.json").read_text()) for actor in ACTORS}
    policy = json.loads((run_dir / "policy.json").read_text())
    explanation = json.loads((run_dir / "explanation.json").read_text())
    return PipelineResult(
        ran,
        skipped,
        scores,
        {"terms": policy["terms"], "fidelity": policy["fidelity"]},
        run_dir / "explanation.md",
        explanation["faithfulness"],
    )


def _unfinished(checkpoint: Path, config) -> bool:
    """A run.ckpt whose training stopped before its last update (Ctrl-C, a kill) and was made
    with `config`'s settings: one `--resume` continues. Its own config says so, not the manifest,
    which records a stage's settings only once the stage has finished (so a first run, or one
    with new settings, would otherwise start again from scratch)."""
    from insight_cli.checkpoint import load_checkpoint
    from insight_cli.train.run_state import changed_settings

    if not checkpoint.exists():
        return False
    saved = load_checkpoint(checkpoint, kind="run")
    return saved.meta["update"] < saved.meta["num_updates"] and not changed_settings(saved.config, config)
