"""The `insight` command line: a thin skin that parses options into a config and calls one
stage function. No training logic lives here."""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from insight_cli import __version__
from insight_cli.errors import UsageError, as_insight_error
from insight_cli.explain import CONTEXT_TOKENS, MAX_TOKENS, RETRIES, SIMULATE, TIMEOUT
from insight_cli.extract_policy import MAX_TERMS as EXTRACT_MAX_TERMS
from insight_cli.pipeline import PRESETS
from insight_cli.runtime import Device

app = typer.Typer(
    name="insight",
    help="Neuro-symbolic visual RL with language explanations (INSIGHT): learn where the objects "
    "are, learn a policy that is a short equation over their coordinates, and explain it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)

# Options every pipeline verb takes.
DeviceOption = Annotated[
    Device, typer.Option(help="Where tensors live: auto picks CUDA when a GPU is visible, else CPU.")
]
SeedOption = Annotated[int, typer.Option(help="Seed for environments, sampling and initialisation.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show full tracebacks instead of one-line errors.")
]
GameOption = Annotated[str, typer.Option(help="Game: a name from `insight games` (any ALE game works).")]


def verb(function):
    """Turn errors into one line with a hint (exit 1; usage errors exit 2), unless --verbose."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        verbose = kwargs.get("verbose", False)
        try:
            return function(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130)
        except Exception as error:
            if verbose:
                raise
            # escape: a path or a server's text may hold [brackets] that rich would read as markup
            err_console.print(f"[bold red]error:[/] {escape(str(as_insight_error(error)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2 if isinstance(error, UsageError) else 1)

    return wrapper


def _version(show: bool) -> None:
    if show:
        console.print(f"insight {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    pass


@app.command()
@verb
def games(
    game: Annotated[Optional[str], typer.Argument(help="Show one game in detail: task, actions, objects.")] = None,
    all_games: Annotated[bool, typer.Option("--all", help="List every ALE game, not only the catalogued ones.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """List the supported games with their actions, or describe one game."""
    from insight_cli.games import PAPER_GAMES, get_game, known_game_names

    if game is not None:
        _describe_game(get_game(game))
        return
    table = Table(title="insight games", show_lines=False)
    table.add_column("game", style="bold")
    table.add_column("kind")
    table.add_column("actions")
    table.add_column("named objects")
    catalogued = [get_game("Catch"), get_game("MetaDrive"), *PAPER_GAMES]
    names = known_game_names() if all_games else [spec.name for spec in catalogued]
    for name in names:
        spec = get_game(name)
        kind = "built-in" if spec.builtin else "driving" if spec.continuous else "paper" if spec.paper else "ALE"
        table.add_row(spec.name, kind, " ".join(spec.action_names), ", ".join(o.name for o in spec.objects) or "-")
    console.print(table)
    if not all_games:
        console.print(
            f"...and {len(known_game_names()) - len(names)} more ALE games: `insight games --all`, "
            "`insight games <name>` for details."
        )


class SegmentBackend(str, Enum):
    auto = "auto"
    classic = "classic"
    fastsam = "fastsam"
    sam = "sam"
    simulator = "simulator"


@app.command()
@verb
def segment(
    game: GameOption = "Pong",
    frames: Annotated[int, typer.Option(min=1, help="Frames to collect (or to read from --input at most).")] = 10_000,
    backend: Annotated[
        SegmentBackend,
        typer.Option(help="classic: colour background model, no weights; fastsam: FastSAM (ultralytics); sam: Segment Anything; "
                     "simulator: the simulator's own object boxes (MetaDrive); auto: simulator for MetaDrive, else classic."),
    ] = SegmentBackend.auto,
    checkpoint: Annotated[
        Optional[Path], typer.Option(help="Weights for fastsam (FastSAM-s.pt / FastSAM-x.pt) or sam (sam_vit_*.pth).")
    ] = None,
    input: Annotated[
        Optional[Path], typer.Option("--input", help="Segment a recording (video file or folder of PNG frames) instead of playing.")
    ] = None,
    policy: Annotated[
        Optional[Path], typer.Option(help="Play with a trained agent (a run.ckpt from `insight train`) instead of at random.")
    ] = None,
    names: Annotated[
        Optional[Path], typer.Option(help='TOML file renaming objects, e.g. obj7 = "bullet".')
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Dataset directory (default: data/<Game>/dataset).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out even if it is not an insight dataset (what is there is deleted).")] = False,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Play the game with a seeded random policy or a trained agent (or read a recording), find and track the
    objects, and write the frame-symbol dataset: frames.parquet, objects.parquet, dataset.json
    and a preview (mp4 + PNG contact sheet)."""
    from insight_cli.segment.stage import SegmentConfig, run

    result = run(
        SegmentConfig(
            game=game, frames=frames, backend=backend.value, checkpoint=checkpoint, input=input, policy=policy,
            names=names, out=out, force=force, seed=seed, device=device.value,
        )
    )
    table = Table(title=f"objects found ({len(result.tracks)} tracks)")
    for column in ("id", "name", "frames seen"):
        table.add_column(column, justify="right" if column != "name" else "left")
    ranked = sorted(result.tracks, key=lambda track: -track["frames_seen"])
    for track in ranked[:SUMMARY_ROWS]:
        table.add_row(str(track["track_id"]), track["name"], f"{100 * track['seen_fraction']:.1f}%")
    console.print(table)
    if len(ranked) > SUMMARY_ROWS:
        console.print(f"...and {len(ranked) - SUMMARY_ROWS} rarer tracks (all in dataset.json)")
    console.print(
        f"[green]wrote[/] {result.dataset}: {result.frames} frames in {result.episodes} episodes "
        f"(train {result.train_frames}, test {result.test_frames}) at {result.frames_per_second:,.0f} frames/s; "
        f"preview: {result.preview[1]}",
        soft_wrap=True,
    )


SUMMARY_ROWS = 20


@app.command()
@verb
def pretrain(
    game: GameOption = "Pong",
    dataset: Annotated[Optional[Path], typer.Option(help="Dataset from `insight segment` (default: data/<Game>/dataset).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the train split.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Stacks per gradient step.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 3e-4).")] = 3e-4,
    n_objects: Annotated[
        str, typer.Option(help="Object slots K: auto = one per dataset track (at most 256), or a number >= the tracks.")
    ] = "auto",
    min_seen: Annotated[
        float, typer.Option(help="Give a slot only to tracks seen in at least this share of the frames (0: every track; the cpu preset: 0.1, which drops flickering score digits).")
    ] = 0.0,
    hidden: Annotated[int, typer.Option(min=1, help="Width of the encoder vector (paper: 2048; the cpu preset: 256).")] = 2048,
    encoder: Annotated[
        str, typer.Option(help="Convolutions: insight (the paper's 5x5 stack) or nature (the DQN Atari CNN, about 10x faster on a CPU).")
    ] = "insight",
    out: Annotated[Optional[Path], typer.Option(help="Checkpoint to write (default: data/<Game>/perception.ckpt).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run saved next to --out.")] = False,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Distil the dataset's objects into the perception CNN: from 4 stacked 84x84 frames it
    predicts which objects exist, where they are and how big. Keeps the checkpoint that is best
    on the test split; writes metrics and a preview next to it."""
    from insight_cli.pretrain.stage import PretrainConfig, run

    result = run(
        PretrainConfig(
            game=game, dataset=dataset, out=out, epochs=epochs, batch_size=batch_size, lr=lr,
            n_objects=n_objects, min_seen=min_seen, hidden=hidden, encoder=encoder, resume=resume, device=device.value, seed=seed,
        )
    )
    best = result.metrics
    console.print(
        f"[green]wrote[/] {result.checkpoint} (best epoch {result.best_epoch}): test coordinate MAE "
        f"{best['mae_x100']:.2f} x100 ({best['mae_pixels']:.2f} px), existence AP {best['existence_ap']:.3f}, "
        f"F1 {best['existence_f1']:.3f}; {result.samples_per_second:,.0f} samples/s",
        soft_wrap=True,
    )


@app.command()
@verb
def train(
    game: GameOption = "Pong",
    load_cnn: Annotated[bool, typer.Option("--load-cnn", help="Start the perception CNN from `insight pretrain`'s checkpoint (else random).")] = False,
    freeze_cnn: Annotated[bool, typer.Option("--freeze-cnn", help="Keep the loaded CNN fixed: no RL, guidance or refinement updates (faster; an ablation).")] = False,
    perception: Annotated[Optional[Path], typer.Option(help="Perception checkpoint for --load-cnn (default: data/<Game>/perception.ckpt).")] = None,
    dataset: Annotated[Optional[Path], typer.Option(help="Segment dataset for object slots and perception refinement (default: data/<Game>/dataset).")] = None,
    total_steps: Annotated[int, typer.Option(min=1, help="Env steps in all (each is 4 frames), over all envs and ranks.")] = 10_000_000,
    num_envs: Annotated[int, typer.Option(min=1, help="Parallel envs per process.")] = 8,
    num_steps: Annotated[int, typer.Option(min=1, help="Steps per env per rollout.")] = 128,
    num_minibatches: Annotated[int, typer.Option(min=1, help="Minibatches each rollout is split into.")] = 4,
    update_epochs: Annotated[int, typer.Option(min=1, help="Passes over each rollout.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate, annealed linearly to 0.")] = 2.5e-4,
    ng: Annotated[bool, typer.Option("--ng/--no-ng", help="Neural guidance: the neural actor acts and the EQL actor imitates it; --no-ng trains the EQL actor by PPO directly.")] = True,
    reg_weight: Annotated[float, typer.Option(help="Final weight of the EQL sparsity penalty (ramped up from 0; paper: 1e-3).")] = 1e-3,
    clip_coef: Annotated[float, typer.Option(min=0.0, help="PPO clipping range (paper: 0.1 on Atari, 0.2 on MetaDrive).")] = 0.1,
    kl_coef: Annotated[float, typer.Option(min=0.0, help="Weight of a KL penalty on each policy change (paper's MetaDrive runs: 0.2).")] = 0.0,
    ego_state: Annotated[bool, typer.Option("--ego-state/--no-ego-state", help="MetaDrive: give the ego state (speed, heading, lane position, ...) to the actors and the critic next to the pixels.")] = True,
    n_funcs: Annotated[int, typer.Option(min=1, help="EQL primitives: each is repeated 2 x n-funcs times.")] = 4,
    n_layers: Annotated[int, typer.Option(min=1, help="EQL symbolic layers.")] = 1,
    cnn_loss_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the perception loss on dataset batches (0: no refinement).")] = 2.0,
    distill_weight: Annotated[float, typer.Option(min=0.0, help="Weight of the EQL actor's imitation of the neural actor.")] = 1.0,
    threshold: Annotated[float, typer.Option(help="Existence probability above which an object's coordinates reach the EQL actor.")] = 0.5,
    eval_episodes: Annotated[int, typer.Option(min=0, help="Full episodes to evaluate the EQL actor on, every --eval-every of training.")] = 10,
    eval_every: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of training between evaluations and checkpoints (0.01: every 1%).")] = 0.01,
    run_name: Annotated[Optional[str], typer.Option(help="Run directory name under data/<Game>/runs (default: a timestamp).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue --run-name (or the latest run) from its checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace the run already under --run-name (else refused).")] = False,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Train the agent with PPO: neural guidance, an EQL actor over the predicted object
    coordinates, a sparsity penalty, and perception refinement on the segment dataset. Prints
    the path of the run.ckpt it wrote. Ctrl-C saves a resumable checkpoint."""
    from insight_cli.train.stage import TrainConfig, run

    result = run(
        TrainConfig(
            game=game, load_cnn=load_cnn, freeze_cnn=freeze_cnn, perception=perception, dataset=dataset, total_steps=total_steps,
            num_envs=num_envs, num_steps=num_steps, num_minibatches=num_minibatches, update_epochs=update_epochs, lr=lr, ng=ng, reg_weight=reg_weight,
            clip_coef=clip_coef, kl_coef=kl_coef, ego_state=ego_state, n_funcs=n_funcs,
            n_layers=n_layers, cnn_loss_weight=cnn_loss_weight, distill_weight=distill_weight, threshold=threshold,
            eval_episodes=eval_episodes, eval_every=eval_every, run_name=run_name, resume=resume, force=force,
            device=device.value, seed=seed,
        )
    )
    returns = result.last_eval.get("eval/eql_return")
    console.print(
        f"{result.global_step:,} env steps at {result.steps_per_second:,.0f} SPS"
        + (f"; EQL actor return {returns:.1f}" if returns is not None else ""),
        soft_wrap=True,
    )
    console.print(str(result.checkpoint), soft_wrap=True, highlight=False)


class Actor(str, Enum):
    neural = "neural"
    eql = "eql"
    symbolic = "symbolic"


RunArgument = Annotated[Path, typer.Argument(help="A run.ckpt written by `insight train`.", show_default=False)]


@app.command()
@verb
def evaluate(
    checkpoint: RunArgument,
    actor: Annotated[Actor, typer.Option(help="Who plays: the neural actor, the EQL actor, or the extracted equations (policy.json) on the predicted coordinates.")] = Actor.eql,
    episodes: Annotated[int, typer.Option(min=1, help="Full episodes to play (eval protocol: up to 30 no-ops at the start, 108k frames at most).")] = 10,
    policy: Annotated[Optional[Path], typer.Option(help="policy.json for --actor symbolic (default: the one next to the run).")] = None,
    video: Annotated[bool, typer.Option("--video", help="Also write an mp4 of one episode with the predicted objects drawn.")] = False,
    video_steps: Annotated[int, typer.Option(min=1, help="Agent steps (4 frames each) at most in the video.")] = 3000,
    num_envs: Annotated[int, typer.Option(min=1, help="Episodes played at once.")] = 8,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: <run>/evaluation).")] = None,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Play full episodes with one of the run's actors and report raw game scores (mean, std,
    min, max); writes <actor>.json, a per-episode <actor>_episodes.parquet and, with --video,
    <actor>.mp4."""
    from insight_cli.evaluate.stage import EvaluateConfig, run

    result = run(
        EvaluateConfig(
            checkpoint=checkpoint, actor=actor.value, episodes=episodes, policy=policy, video=video,
            video_steps=video_steps, num_envs=num_envs, out=out, device=device.value, seed=seed,
        )
    )
    s = result.summary
    arrived = f", reached the destination in {s['success_rate']:.0%}" if "success_rate" in s else ""
    console.print(
        f"{s['game']} {s['actor']} actor, {s['episodes']} episodes: mean {s['mean']:.2f} +- {s['std']:.2f} "
        f"(min {s['min']:g}, max {s['max']:g}){arrived}",
        soft_wrap=True,
    )
    _print_written(result.files)


def _term_budget(value) -> Optional[int]:
    """--max-terms: a positive number, or none."""
    text = str(value).strip().lower()
    if text == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise typer.BadParameter(f"expected a number of terms (at least 1) or none, got {value!r}")
    return int(text)


class Fit(str, Enum):
    auto = "auto"
    prune = "prune"
    refit = "refit"


@app.command("extract-policy")
@verb
def extract_policy(
    checkpoint: RunArgument,
    max_terms: Annotated[Optional[int], typer.Option(parser=_term_budget, metavar="N|none", help="Terms per action at most (the least pruning that fits, or a refit). none: the whole network pruned at --threshold, however long (an expansion that could pass 100,000 terms is refused).")] = EXTRACT_MAX_TERMS,
    fit: Annotated[Fit, typer.Option(help="prune: the pruned EQL network; refit: equations fitted to the EQL actor's decisions (DAgger-style, on states they visit); auto: refit when the pruned network's fidelity is below --min-fidelity.")] = Fit.auto,
    min_fidelity: Annotated[float, typer.Option(min=0.0, max=1.0, help="With --fit auto, the fidelity (held-out and rollouts, the lower) the pruned network must reach.")] = 0.95,
    refit_rounds: Annotated[int, typer.Option(min=0, help="DAgger rounds of a refit: play the equations, label the states with the EQL actor, refit.")] = 3,
    threshold: Annotated[float, typer.Option(min=0.0, help="Prune EQL weights, and expanded terms, smaller than this (the least pruning tried).")] = 0.01,
    digits: Annotated[int, typer.Option(min=1, max=15, help="Significant digits of the coefficients.")] = 3,
    episodes: Annotated[int, typer.Option(min=0, help="Fresh episodes for each measured set of equations (rollout fidelity and return), the EQL actor and each refit round (0: skip rollouts).")] = 2,
    max_steps: Annotated[int, typer.Option(min=1, help="Agent steps per rollout episode at most (a cut episode's return is its score so far).")] = 500,
    dataset: Annotated[Optional[Path], typer.Option(help="Dataset whose test split gives held-out states (default: the run's).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: the run's directory).")] = None,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Turn the run's EQL actor into one short equation per action over named object
    coordinates (x_ball_4 = the ball's x in the current frame; MetaDrive: and ego state values
    such as ego_speed), leaving out objects that never move or that the actor ignores. Reports
    each action's number of terms, the fidelity (how often the equations choose what the EQL
    actor chooses, on held-out states and on their own rollouts; continuous actions: how often
    every action value is within 0.05 of the actor's), their return, and the trade-off for
    budgets of 1 to 20 terms; writes policy.json, policy.md, policy.tex, a numpy-only
    policy.py, policy_tradeoff.parquet and policy_tradeoff.png."""
    from insight_cli.extract_policy.stage import ExtractConfig, run
    from insight_cli.extract_policy.symbolic import READABLE_TERMS

    result = run(
        ExtractConfig(
            checkpoint=checkpoint, max_terms=max_terms, fit=fit.value, min_fidelity=min_fidelity,
            refit_rounds=refit_rounds, threshold=threshold, digits=digits, episodes=episodes, max_steps=max_steps,
            dataset=dataset, out=out, device=device.value, seed=seed,
        )
    )
    policy = result.policy
    made = "refitted to the EQL actor's decisions" if policy.method == "refit" else f"weights below {policy.threshold:.3g} pruned"
    table = Table(title=f"policy ({made})")
    table.add_column("action")
    table.add_column("terms", justify="right")
    table.add_column("mean (action = tanh(mean))" if policy.continuous else "logit")
    for name, count, expression in zip(policy.actions, policy.term_counts, policy.expressions):
        shown = escape(str(expression)) if count <= READABLE_TERMS else f"[yellow]{count} terms: not readable[/]"
        table.add_row(escape(name), str(count), shown)
    console.print(table)
    tradeoff = Table(title="length against fidelity (rollouts: the equations' own, cut at --max-steps)")
    for column in ("equations", "budget", "terms", "held-out", "rollouts", "return"):
        tradeoff.add_column(column, justify="left" if column == "equations" else "right")
    for entry in result.tradeoff:
        rollout, score = entry["rollout_fidelity"], entry["return"]
        tradeoff.add_row(entry["method"] + (" [bold](chosen)[/]" if entry["chosen"] else ""),
                         "whole" if entry["budget"] is None else str(entry["budget"]), str(entry["terms"]),
                         f"{entry['held_out_fidelity']:.1%}", "-" if rollout is None else f"{rollout:.1%}",
                         "-" if score is None else f"{score:.2f}")
    console.print(tradeoff)
    fidelity, returns = result.fidelity, result.returns
    line = f"fidelity: {fidelity['held_out_fidelity']:.1%} of {fidelity['held_out_states']:,} held-out states"
    if "held_out_action_error" in fidelity:
        line += f" (mean action difference {fidelity['held_out_action_error']:.3f})"
    if returns:
        line += (f", {fidelity['rollout_fidelity']:.1%} of {fidelity['rollout_states']:,} states of its own rollouts; "
                 f"return: equations {returns['symbolic']:.2f}, EQL actor {returns['eql']:.2f}")
    console.print(line, soft_wrap=True)
    console.print("variables used: " + escape(", ".join(v.name for v in policy.used_variables)), soft_wrap=True)
    if result.left_out:
        console.print("left out: " + escape("; ".join(f"{name} ({why})" for name, why in result.left_out.items())),
                      soft_wrap=True)
    if max(policy.term_counts) > READABLE_TERMS:
        console.print(f"[yellow]an action has more than {READABLE_TERMS} terms: give a term budget with --max-terms[/]")
    _print_written(result.files)


@app.command()
@verb
def explain(
    checkpoint: RunArgument,
    llm: Annotated[str, typer.Option(help="offline (deterministic, from the equations) or a model name served by an OpenAI-compatible API, e.g. gpt-4.")] = "offline",
    decisions: Annotated[int, typer.Option(min=0, help="Decisions to explain, sampled from a fresh greedy episode.")] = 3,
    frame_index: Annotated[Optional[int], typer.Option(min=0, help="Explain the decision at this frame of the run's dataset instead.")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="policy.json to explain (default: the run's; extracted now if missing).")] = None,
    max_terms: Annotated[int, typer.Option(min=1, help="Terms per action when the policy has to be extracted first.")] = EXTRACT_MAX_TERMS,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server (default: OPENAI_BASE_URL, else api.openai.com).")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="LLM sampling temperature.")] = 0.0,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for each LLM answer; one that times out is not asked again (a local server would still be computing it).")] = TIMEOUT,
    retries: Annotated[int, typer.Option(min=0, help="LLM retries (connection errors, 429, 5xx), with exponential backoff.")] = RETRIES,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens per LLM answer at most; an answer cut off there is reported.")] = MAX_TOKENS,
    context_tokens: Annotated[int, typer.Option(min=2, help="The LLM server's context size: each prompt and its answer must fit (earlier answers of the policy dialogue are left out to fit).")] = CONTEXT_TOKENS,
    simulate: Annotated[int, typer.Option(min=0, help="Held-out states in which a reader of the explanation alone predicts the action (simulatability; 0: skip).")] = SIMULATE,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse the LLM answers a failed run saved in explanation.partial.json.")] = False,
    show_prompts: Annotated[bool, typer.Option("--show-prompts", help="Print every prompt (they are saved in explanation.json either way).")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Output directory (default: the run's directory).")] = None,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Explain the run's policy (per action: which variables raise or lower its logit and when
    it is chosen; then a summary) and single decisions (the gradients of the chosen action's
    log-probability; continuous actions: of each action value), with an LLM or offline. Every
    claim is checked against the equations (a decision's most influential variable also by a
    counterfactual step), and a reader of the explanation alone predicts the action in held-out
    states (simulatability); writes explanation.md, explanation.json and a picture per decision."""
    from insight_cli.explain.stage import ExplainConfig, run

    result = run(
        ExplainConfig(
            checkpoint=checkpoint, llm=llm, decisions=decisions, frame_index=frame_index, policy=policy,
            max_terms=max_terms, base_url=base_url, temperature=temperature, timeout=timeout, retries=retries,
            max_tokens=max_tokens, context_tokens=context_tokens, simulate=simulate, resume=resume,
            show_prompts=show_prompts, out=out, device=device.value, seed=seed,
        )
    )
    check = result.faithfulness
    if not check["claims"]:
        console.print("[yellow]faithfulness: 0 claims checked[/] (no answer gave a claims block that reads, and no prose "
                      "names a variable with a direction: read explanation.md, or try another model)", soft_wrap=True)
    else:
        color = "green" if check["claims"] == check["supported"] and not check["disagreements"] else "yellow"
        disagreeing = f"; the prose says {check['disagreements']} things the claims blocks do not" if check["disagreements"] else ""
        console.print(f"[{color}]faithfulness:[/] {check['claims']} claims, {check['supported']} supported, "
                      f"{check['contradicted']} contradicted, {check['unsupported']} unsupported{disagreeing}", soft_wrap=True)
    tested = check["counterfactuals"]
    if tested["checked"]:
        color = "green" if tested["confirmed"] == tested["checked"] else "yellow"
        console.print(f"[{color}]counterfactuals:[/] {tested['confirmed']} of {tested['checked']} decisions' most "
                      "influential variable moves the action as explained", soft_wrap=True)
    if check["simulatability"]:
        console.print(f"simulatability: {_simulatability(check['simulatability'])}", soft_wrap=True)
    if check["truncated"]:
        console.print(f"[yellow]{check['truncated']} answers were cut off[/] (raise --max-tokens {max_tokens}, or check "
                      "--context-tokens against the server's context)", soft_wrap=True)
    _print_written(result.files)


def _simulatability(score: dict) -> str:
    return (f"{score['accuracy']:.0%} of {score['states']} held-out states (chance {score['chance']:.0%}, "
            f"always {score['majority_action']} {score['majority']:.0%})")


PresetName = Enum("PresetName", {name: name for name in PRESETS}, type=str)


@app.command()
@verb
def pipeline(
    game: GameOption = "Pong",
    preset: Annotated[PresetName, typer.Option(help="Budgets: demo (minutes on a CPU), cpu (a real result on a 2-core CPU: 3M env steps, frozen fast perception), quick (an hour or so on a GPU), paper (the paper's settings: 10M env steps).")] = PresetName.demo,
    force: Annotated[bool, typer.Option("--force", help="Redo every stage, even those whose outputs are up to date.")] = False,
    llm: Annotated[str, typer.Option(help="Explain with: offline, or a model behind an OpenAI-compatible API (see `insight explain --help`).")] = "offline",
    base_url: Annotated[Optional[str], typer.Option(help="--llm's OpenAI-compatible server (default: OPENAI_BASE_URL, else api.openai.com).")] = None,
    timeout: Annotated[float, typer.Option(min=0.001, help="Seconds to wait for each LLM answer (not asked again when it times out).")] = TIMEOUT,
    retries: Annotated[int, typer.Option(min=0, help="LLM retries (connection errors, 429, 5xx), with exponential backoff.")] = RETRIES,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens per LLM answer at most.")] = MAX_TOKENS,
    context_tokens: Annotated[int, typer.Option(min=2, help="The LLM server's context size, which each prompt and its answer must fit.")] = CONTEXT_TOKENS,
    total_steps: Annotated[Optional[int], typer.Option(help="Train for this many env steps instead of the preset's.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Train with this learning rate instead of the preset's (2.5e-4; MetaDrive 5e-5).")] = None,
    device: DeviceOption = Device.auto,
    seed: SeedOption = 0,
    verbose: VerboseOption = False,
) -> None:
    """Run every stage on one game: segment, pretrain, train, extract-policy, evaluate (neural,
    EQL and symbolic actors) and explain, under data/<Game>/ (the run is runs/<preset>).
    Stages whose outputs are up to date are skipped; an interrupted train resumes. MetaDrive
    trains with the paper's driving settings (lr 5e-5, clip 0.2, 8 envs x 125 steps, 10
    minibatches, KL penalty 0.2, reg 1e-4, the EQL actor collects the data)."""
    from insight_cli.pipeline import PipelineConfig, run

    result = run(PipelineConfig(game=game, preset=preset.value, force=force, llm=llm, base_url=base_url, timeout=timeout,
                                retries=retries, max_tokens=max_tokens, context_tokens=context_tokens,
                                total_steps=total_steps, lr=lr, device=device.value, seed=seed))
    table = Table(title=f"{game}, preset {preset.value}")
    table.add_column("what")
    table.add_column("result")
    for actor, summary in result.scores.items():
        arrived = f", {summary['success_rate']:.0%} reached the destination" if "success_rate" in summary else ""
        table.add_row(f"{actor} actor return",
                      f"{summary['mean']:.2f} +- {summary['std']:.2f} over {summary['episodes']} episodes{arrived}")
    table.add_row("terms per action", ", ".join(f"{name} {count}" for name, count in result.policy["terms"].items()))
    fidelity = result.policy["fidelity"]
    shown = f"{fidelity['held_out_fidelity']:.1%} held-out"
    if "rollout_fidelity" in fidelity:
        shown += f", {fidelity['rollout_fidelity']:.1%} rollouts"
    if "held_out_action_error" in fidelity:
        shown += f" (mean action difference {fidelity['held_out_action_error']:.3f} held-out)"
    table.add_row("fidelity of the equations", shown)
    check = result.faithfulness
    checked = f"{check['supported']} of {check['claims']} claims supported" if check["claims"] else "[yellow]0 claims checked[/]"
    table.add_row("explanation", f"{result.explanation} ({checked})")
    table.add_row("simulatability", _simulatability(check["simulatability"]) if check.get("simulatability") else "-")
    table.add_row("stages run / up to date", f"{', '.join(result.ran) or '-'} / {', '.join(result.skipped) or '-'}")
    console.print(table)


def _print_written(files) -> None:
    for path in files:
        console.print(f"[green]wrote[/] {path}", soft_wrap=True, highlight=False)


def _describe_game(spec) -> None:
    origin = f"ALE: {spec.ale_id}" if spec.ale_id else "MetaDrive, continuous actions" if spec.continuous else "built-in"
    console.print(f"[bold]{spec.name}[/]  ({origin})")
    console.print(spec.task)
    if spec.continuous:
        from insight_cli.envs.metadrive import ASSET_HINT, asset_status

        console.print(f"MetaDrive 3-D assets: {asset_status()}. The top-down view insight uses needs none; "
                      f"the RGB camera would: {ASSET_HINT}.")
    actions = Table(title="actions")
    actions.add_column("#", justify="right")
    actions.add_column("action")
    actions.add_column("effect")
    for index, (meaning, effect) in enumerate(spec.actions.items()):
        actions.add_row(str(index), meaning, effect)
    console.print(actions)
    if spec.objects:
        objects = Table(title="objects")
        for column in ("name", "description", "colour (RGB)", "region x0,y0,x1,y1", "max"):
            objects.add_column(column)
        for obj in spec.objects:
            colours = " ".join("#{:02x}{:02x}{:02x}".format(*colour) for colour in obj.colors)
            region = ",".join(f"{edge:.2f}" for edge in obj.region)
            objects.add_row(obj.name, obj.description, colours, region, str(obj.max_count))
        console.print(objects)
    if spec.state:
        state = Table(title="ego state (variables of the equations, each in [0, 1])")
        state.add_column("variable")
        state.add_column("meaning")
        for name, meaning in spec.state.items():
            state.add_row(name, meaning)
        console.print(state)


def main() -> None:
    app(prog_name="insight")


if __name__ == "__main__":
    sys.exit(main())
