"""The `insight` command line: a thin skin that parses options into a config and calls one
stage function. No training logic lives here."""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from insight_cli import __version__
from insight_cli.errors import UsageError, as_insight_error
from insight_cli.evaluate.config import EvaluateConfig
from insight_cli.explain.config import ExplainConfig
from insight_cli.extract_policy.config import ExtractConfig
from insight_cli.options import VERBOSE, command
from insight_cli.pipeline import PipelineConfig
from insight_cli.pretrain.config import PretrainConfig
from insight_cli.segment.config import SegmentConfig
from insight_cli.train.config import TrainConfig

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
            err_console.print(
                f"[bold red]error:[/] {escape(str(as_insight_error(error)))}", highlight=False, soft_wrap=True
            )
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
    all_games: Annotated[
        bool, typer.Option("--all", help="List every ALE game, not only the catalogued ones.")
    ] = False,
    verbose: VERBOSE = False,
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


def _segment(config) -> None:
    """Play the game with a seeded random policy or a trained agent (or read a recording), find and track the
    objects, and write the frame-symbol dataset: frames.parquet, objects.parquet, dataset.json
    and a preview (mp4 + PNG contact sheet)."""
    from insight_cli.segment.stage import run

    result = run(config)
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


command(app, SegmentConfig, _segment, wrap=verb)


SUMMARY_ROWS = 20


def _pretrain(config) -> None:
    """Distil the dataset's objects into the perception CNN: from 4 stacked 84x84 frames it
    predicts which objects exist, where they are and how big. Keeps the checkpoint that is best
    on the test split; writes metrics and a preview next to it."""
    from insight_cli.pretrain.stage import run

    result = run(config)
    best = result.metrics
    console.print(
        f"[green]wrote[/] {result.checkpoint} (best epoch {result.best_epoch}): test coordinate MAE "
        f"{best['mae_x100']:.2f} x100 ({best['mae_pixels']:.2f} px), existence AP {best['existence_ap']:.3f}, "
        f"F1 {best['existence_f1']:.3f}; {result.samples_per_second:,.0f} samples/s",
        soft_wrap=True,
    )


command(app, PretrainConfig, _pretrain, wrap=verb)


def _train(config) -> None:
    """Train the agent with PPO: neural guidance, an EQL actor over the predicted object
    coordinates, a sparsity penalty, and perception refinement on the segment dataset. Prints
    the path of the run.ckpt it wrote. Ctrl-C saves a resumable checkpoint."""
    from insight_cli.train.stage import run

    result = run(config)
    returns = result.last_eval.get("eval/eql_return")
    console.print(
        f"{result.global_step:,} env steps at {result.steps_per_second:,.0f} SPS"
        + (f"; EQL actor return {returns:.1f}" if returns is not None else ""),
        soft_wrap=True,
    )
    console.print(str(result.checkpoint), soft_wrap=True, highlight=False)


command(app, TrainConfig, _train, wrap=verb)


def _evaluate(config) -> None:
    """Play full episodes with one of the run's actors and report raw game scores (mean, std,
    min, max); writes <actor>.json, a per-episode <actor>_episodes.parquet and, with --video,
    <actor>.mp4."""
    from insight_cli.evaluate.stage import run

    result = run(config)
    s = result.summary
    arrived = f", reached the destination in {s['success_rate']:.0%}" if "success_rate" in s else ""
    console.print(
        f"{s['game']} {s['actor']} actor, {s['episodes']} episodes: mean {s['mean']:.2f} +- {s['std']:.2f} "
        f"(min {s['min']:g}, max {s['max']:g}){arrived}",
        soft_wrap=True,
    )
    _print_written(result.files)


command(app, EvaluateConfig, _evaluate, wrap=verb)


def _extract_policy(config) -> None:
    """Turn the run's EQL actor into one short equation per action over named object
    coordinates (x_ball_4 = the ball's x in the current frame; MetaDrive: and ego state values
    such as ego_speed), leaving out objects that never move or that the actor ignores. Reports
    each action's number of terms, the fidelity (how often the equations choose what the EQL
    actor chooses, on held-out states and on their own rollouts; continuous actions: how often
    every action value is within 0.05 of the actor's), their return, and the trade-off for
    budgets of 1 to 20 terms; writes policy.json, policy.md, policy.tex, a numpy-only
    policy.py, policy_tradeoff.parquet and policy_tradeoff.png."""
    from insight_cli.extract_policy.stage import run
    from insight_cli.extract_policy.symbolic import READABLE_TERMS

    result = run(config)
    policy = result.policy
    made = (
        "refitted to the EQL actor's decisions"
        if policy.method == "refit"
        else f"weights below {policy.threshold:.3g} pruned"
    )
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
        tradeoff.add_row(
            entry["method"] + (" [bold](chosen)[/]" if entry["chosen"] else ""),
            "whole" if entry["budget"] is None else str(entry["budget"]),
            str(entry["terms"]),
            f"{entry['held_out_fidelity']:.1%}",
            "-" if rollout is None else f"{rollout:.1%}",
            "-" if score is None else f"{score:.2f}",
        )
    console.print(tradeoff)
    fidelity, returns = result.fidelity, result.returns
    line = f"fidelity: {fidelity['held_out_fidelity']:.1%} of {fidelity['held_out_states']:,} held-out states"
    if "held_out_action_error" in fidelity:
        line += f" (mean action difference {fidelity['held_out_action_error']:.3f})"
    if returns:
        line += (
            f", {fidelity['rollout_fidelity']:.1%} of {fidelity['rollout_states']:,} states of its own rollouts; "
            f"return: equations {returns['symbolic']:.2f}, EQL actor {returns['eql']:.2f}"
        )
    if result.same_effect:
        line += " (" + ", ".join(f"{a} counts as {b}" for a, b in result.same_effect.items()) + ": the same effect)"
    console.print(line, soft_wrap=True)
    console.print("variables used: " + escape(", ".join(v.name for v in policy.used_variables)), soft_wrap=True)
    if result.left_out:
        console.print(
            "left out: " + escape("; ".join(f"{name} ({why})" for name, why in result.left_out.items())), soft_wrap=True
        )
    if max(policy.term_counts) > READABLE_TERMS:
        console.print(f"[yellow]an action has more than {READABLE_TERMS} terms: give a term budget with --max-terms[/]")
    _print_written(result.files)


command(app, ExtractConfig, _extract_policy, name="extract-policy", wrap=verb)


def _explain(config) -> None:
    """Explain the run's policy (per action: which variables raise or lower its logit and when
    it is chosen; then a summary) and single decisions (the gradients of the chosen action's
    log-probability; continuous actions: of each action value), with an LLM or offline. Every
    claim is checked against the equations (a decision's most influential variable also by a
    counterfactual step), and a reader of the explanation alone predicts the action in held-out
    states (simulatability); writes explanation.md, explanation.json and a picture per decision."""
    from insight_cli.explain.stage import run

    result = run(config)
    check = result.faithfulness
    if not check["claims"]:
        console.print(
            "[yellow]faithfulness: 0 claims checked[/] (no answer gave a claims block that reads, and no prose "
            "names a variable with a direction: read explanation.md, or try another model)",
            soft_wrap=True,
        )
    else:
        color = "green" if check["claims"] == check["supported"] and not check["disagreements"] else "yellow"
        disagreeing = (
            f"; the prose says {check['disagreements']} things the claims blocks do not"
            if check["disagreements"]
            else ""
        )
        console.print(
            f"[{color}]faithfulness:[/] {check['claims']} claims, {check['supported']} supported, "
            f"{check['contradicted']} contradicted, {check['unsupported']} unsupported{disagreeing}",
            soft_wrap=True,
        )
    tested = check["counterfactuals"]
    if tested["checked"]:
        color = "green" if tested["confirmed"] == tested["checked"] else "yellow"
        console.print(
            f"[{color}]counterfactuals:[/] {tested['confirmed']} of {tested['checked']} decisions' most "
            "influential variable moves the action as explained",
            soft_wrap=True,
        )
    if check["simulatability"]:
        console.print(f"simulatability: {_simulatability(check['simulatability'])}", soft_wrap=True)
    if check["truncated"]:
        console.print(
            f"[yellow]{check['truncated']} answers were cut off[/] (raise --max-tokens {config.max_tokens}, or check "
            "--context-tokens against the server's context)",
            soft_wrap=True,
        )
    _print_written(result.files)


command(app, ExplainConfig, _explain, wrap=verb)


def _simulatability(score: dict) -> str:
    return (
        f"{score['accuracy']:.0%} of {score['states']} held-out states (chance {score['chance']:.0%}, "
        f"always {score['majority_action']} {score['majority']:.0%})"
    )


def _pipeline(config) -> None:
    """Run every stage on one game: segment, pretrain, train, extract-policy, evaluate (neural,
    EQL and symbolic actors) and explain, under data/<Game>/ (the run is runs/<preset>).
    Stages whose outputs are up to date are skipped; an interrupted train resumes. MetaDrive
    trains with the paper's driving settings (pipeline.DRIVING)."""
    from insight_cli.pipeline import run

    result = run(config)
    table = Table(title=f"{config.game}, preset {config.preset}")
    table.add_column("what")
    table.add_column("result")
    for actor, summary in result.scores.items():
        arrived = f", {summary['success_rate']:.0%} reached the destination" if "success_rate" in summary else ""
        table.add_row(
            f"{actor} actor return",
            f"{summary['mean']:.2f} +- {summary['std']:.2f} over {summary['episodes']} episodes{arrived}",
        )
    table.add_row("terms per action", ", ".join(f"{name} {count}" for name, count in result.policy["terms"].items()))
    fidelity = result.policy["fidelity"]
    shown = f"{fidelity['held_out_fidelity']:.1%} held-out"
    if "rollout_fidelity" in fidelity:
        shown += f", {fidelity['rollout_fidelity']:.1%} rollouts"
    if "held_out_action_error" in fidelity:
        shown += f" (mean action difference {fidelity['held_out_action_error']:.3f} held-out)"
    table.add_row("fidelity of the equations", shown)
    check = result.faithfulness
    checked = (
        f"{check['supported']} of {check['claims']} claims supported"
        if check["claims"]
        else "[yellow]0 claims checked[/]"
    )
    table.add_row("explanation", f"{result.explanation} ({checked})")
    table.add_row("simulatability", _simulatability(check["simulatability"]) if check.get("simulatability") else "-")
    table.add_row("stages run / up to date", f"{', '.join(result.ran) or '-'} / {', '.join(result.skipped) or '-'}")
    console.print(table)


command(app, PipelineConfig, _pipeline, wrap=verb)


def _print_written(files) -> None:
    for path in files:
        console.print(f"[green]wrote[/] {path}", soft_wrap=True, highlight=False)


def _describe_game(spec) -> None:
    origin = (
        f"ALE: {spec.ale_id}" if spec.ale_id else "MetaDrive, continuous actions" if spec.continuous else "built-in"
    )
    console.print(f"[bold]{spec.name}[/]  ({origin})")
    console.print(spec.task)
    if spec.continuous:
        from insight_cli.envs.metadrive import ASSET_HINT, asset_status

        console.print(
            f"MetaDrive 3-D assets: {asset_status()}. The top-down view insight uses needs none; "
            f"the RGB camera would: {ASSET_HINT}."
        )
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
