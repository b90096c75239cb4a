"""`insight explain`: explain the run's extracted policy and some of its decisions in plain
language (an LLM, or the offline analyst), check every claim against the equations, and write
explanation.md, explanation.json and one picture per decision (docs/design.md §12)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from insight_cli.dataset import load_dataset
from insight_cli.errors import UsageError
from insight_cli.evaluate.episodes import agent_actor, watch_episode
from insight_cli.explain import (
    faithfulness,
    simulatability,
    structured,
)
from insight_cli.explain.backends import OfflineAnalyst, OpenAIBackend, Reply
from insight_cli.explain.config import ExplainConfig
from insight_cli.explain.decisions import Decision, decide, gradient_table
from insight_cli.explain.prompts import (
    READER_SYSTEM,
    context,
    decision_prompt,
    policy_questions,
    reader_prompt,
)
from insight_cli.explain.structured import Structured
from insight_cli.explain.transcript import PARTIAL, Transcript
from insight_cli.extract_policy.export import read_policy, read_policy_for
from insight_cli.extract_policy.stage import ExtractConfig, held_out_states, interface
from insight_cli.extract_policy.stage import run as extract
from insight_cli.extract_policy.symbolic import Interface, SymbolicPolicy, join
from insight_cli.files import write_atomically
from insight_cli.games import get_game
from insight_cli.perception.data import decode, slots_of
from insight_cli.pictures import arrow, caption, mark_points, png_bytes, upscale
from insight_cli.progress import console
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent

ROLLOUT_STEPS = 1000  # decisions are sampled from at most this many steps of a fresh episode
MARKED = 3  # variables with the largest gradients drawn on a decision's picture


@dataclass
class ExplainResult:
    files: list[Path]
    faithfulness: dict
    document: dict


def _policy(config: ExplainConfig, path: Path, game: str, actor: Interface) -> tuple[SymbolicPolicy, np.ndarray | None]:
    """--policy (extracted for this game and a run with this EQL actor's variables and
    actions); else the policy.json extracted from this run, next to it; else a new extraction,
    written next to the run as `insight extract-policy --max-terms` would, whose held-out
    states come back too (None otherwise)."""
    if config.policy is not None:
        return read_policy_for(config.policy, game, actor), None
    own = path.parent / "policy.json"
    if own.exists():
        policy, document = read_policy(own)
        if Path(document.get("run", "")).resolve() == path.resolve():
            return policy, None
    console.print(f"extracting the policy (--max-terms {config.max_terms}) next to {path}")
    result = extract(
        ExtractConfig(checkpoint=path, max_terms=config.max_terms, episodes=0, device=config.device, seed=config.seed)
    )
    return result.policy, result.held_out


def _rollout_decisions(agent, policy, game, count: int, seed: int, device) -> list[Decision]:
    """`count` states of one fresh greedy episode (at most ROLLOUT_STEPS), chosen at random."""
    seen = list(watch_episode(agent_actor(agent, "symbolic", policy), game, seed, device, ROLLOUT_STEPS))
    steps = sorted(np.random.default_rng(seed).choice(len(seen), size=min(count, len(seen)), replace=False))
    return [
        decide(
            policy,
            f"rollout step {step}",
            seen[step].rgb,
            seen[step].coordinates,
            seen[step].state if policy.state_names else None,
        )
        for step in steps
    ]


@torch.no_grad()
def _frame_decision(agent, policy, dataset_path: Path, row: int, device) -> Decision:
    dataset = load_dataset(dataset_path)
    if row >= dataset.frames.num_rows:
        raise UsageError(f"--frame-index {row} is past the dataset's last frame ({dataset.frames.num_rows - 1})")
    rows = dataset.stack_indices()[row]  # (4,) -1 before the episode began
    stacks = dataset.gray_frames()[np.maximum(rows, 0)]
    stacks[rows < 0] = 0  # frames before the episode began are blank
    state = dataset.states()[row] if policy.state_names else None
    coordinates = agent.perception.object_coordinates(agent.perception(torch.from_numpy(stacks[None]).to(device)))
    return decide(policy, f"dataset frame {row}", dataset.rgb(row), coordinates.float().cpu().numpy()[0], state)


def decision_picture(policy: SymbolicPolicy, decision: Decision) -> np.ndarray:
    """The frame with every present object marked and, at the objects of the variables with the
    largest gradients, arrows pointing the way that makes the action more likely."""
    canvas = upscale(decision.rgb)
    current = decision.coordinates[:, -1]  # (K, 2) the newest frame
    objects = sorted({v.slot: v.object for v in policy.variables if v.slot is not None}.items())
    present = [(slot, name) for slot, name in objects if current[slot].any()]
    mark_points(canvas, np.array([current[slot] for slot, _ in present]).reshape(-1, 2), [name for _, name in present])
    positions = [v for v in decision.relevant(policy) if policy.variables[v].slot is not None]
    for v in positions[:MARKED]:
        variable, action = policy.variables[v], decision.strongest(policy, v)
        gradient, at = decision.gradients[action, v], decision.coordinates[variable.slot, variable.frame - 1]
        if gradient == 0 or not at.any():  # no arrow at an object that is not there
            continue
        direction = (np.sign(gradient), 0) if variable.axis == "x" else (0, np.sign(gradient))
        label = f"{variable.name} {gradient:+.2g}" + (f" {policy.actions[action]}" if policy.continuous else "")
        arrow(canvas, at, direction, label)
    return caption(canvas, f"{decision.summary(policy)}  ({decision.source})")


def _labelled_states(checkpoint, dataset_path: Path, policy: SymbolicPolicy) -> tuple[np.ndarray, np.ndarray]:
    """The policy's (N, V) inputs on the dataset's own object boxes (what segment found, not what
    the perception CNN predicts) on its training split and on its test split: real game states
    whatever the CNN's quality, and free. The offline analyst reads when each action is chosen on
    the first; simulatability is measured on the second, held out from it."""
    dataset = load_dataset(dataset_path)
    slots = slots_of(checkpoint.meta)
    data = decode(dataset, slots, torch.device("cpu"))
    coordinates, states = data.coordinates.numpy(), dataset.states() if policy.state_names else None

    def inputs(rows: torch.Tensor) -> np.ndarray:
        rows = rows.numpy()
        return join(coordinates[rows], None if states is None else states[rows])

    return inputs(data.train_rows), inputs(data.test_rows)


def _read(reply: Reply, policy: SymbolicPolicy, action: str | None, check) -> tuple[dict, Structured]:
    """An answer's record: its prose, and the claims of its claims block checked by `check`
    (statements -> claims), or where no block reads those of its prose; the prose's claims also
    as a second opinion, and where the two disagree."""
    found = structured.parse(reply.text, policy.actions, action)
    prose = faithfulness.read_text(found.prose, policy.actions, action)
    record = {
        "answer": found.prose,
        "claims_block": found.summary(),
        "claims_from": "claims block" if found.read else "prose",
        "claims": [asdict(c) for c in check(found.statements if found.read else prose)],
        "prose_claims": [asdict(c) for c in check(prose)],
        "disagreements": faithfulness.disagreements(found.statements, prose) if found.read else [],
        "truncated": reply.truncated,
        "prompt_tokens": reply.prompt_tokens,
        "tokens_estimated": reply.estimated,
        "left_out": reply.left_out,
    }
    return record, found


def _policy_sections(
    backend, shared: str, questions: list[str], policy: SymbolicPolicy, reference: np.ndarray
) -> list[dict]:
    replies = backend.policy_dialogue(shared, questions, structured.schema(policy.actions, decision=False))
    sections = []
    for action, question, reply in zip([*policy.actions, None], questions, replies):
        record, _ = _read(
            reply, policy, action, lambda statements: faithfulness.check_policy(statements, policy, reference)
        )
        sections.append({"action": action, "question": question, **record})
    return sections


def _counterfactual(policy: SymbolicPolicy, decision: Decision, found: Structured) -> dict:
    """The counterfactual test of the variable the answer calls most influential, in the direction
    its claims give it for the action taken (continuous actions: for the action they name)."""
    variable = found.most_influential
    if variable is None:
        return {"variable": None, "reason": "the answer names no most influential variable"}
    if variable not in {v.name for v in policy.variables}:
        return {"variable": variable, "reason": "there is no such variable"}
    taken = None if policy.continuous else policy.actions[decision.action]
    claimed = [s for s in found.statements if s.variable == variable and taken in (None, s.action)]
    if not claimed:
        return {"variable": variable, "reason": "its claims give it no direction" + (f" for {taken}" if taken else "")}
    return faithfulness.counterfactual(policy, decision.inputs, variable, claimed[0].action, claimed[0].direction)


def _decision_record(
    backend, shared: str, prompt: str, decision: Decision, number: int, policy: SymbolicPolicy
) -> dict:
    reply = backend.decision(shared, prompt, decision, number, structured.schema(policy.actions, decision=True))
    default = None if policy.continuous else policy.actions[decision.action]
    record, found = _read(
        reply,
        policy,
        default,
        lambda statements: faithfulness.check_decision(statements, policy, decision.gradients, number),
    )
    if policy.continuous:
        taken = {"action": decision.summary(policy), "actions": dict(zip(policy.actions, map(float, decision.action)))}
    else:
        taken = {
            "action": policy.actions[decision.action],
            "probabilities": dict(zip(policy.actions, map(float, decision.probabilities))),
        }
    return {
        "number": number,
        "source": decision.source,
        **taken,
        "variables": [
            {
                "name": policy.variables[i].name,
                "value": float(decision.inputs[i]),
                "gradients": dict(zip(policy.actions, map(float, decision.gradients[:, i]))),
                "gradient": float(decision.gradients[decision.strongest(policy, i), i]),
            }
            for i in decision.relevant(policy)
        ],
        "prompt": prompt,
        **record,
        "counterfactual": _counterfactual(policy, decision, found),
        "picture": f"decision_{number}.png",
    }


def _simulation(
    backend, config: ExplainConfig, policy: SymbolicPolicy, sections: list[dict], held_out: np.ndarray
) -> tuple[dict | None, dict | None]:
    """The simulatability test over held-out states, its record and its score. Discrete actions
    only: a reader names one action."""
    if policy.continuous or not config.simulate or not len(held_out):
        return None, None
    explanation = "\n\n".join(f"{section['action'] or 'Summary'}:\n{section['answer']}" for section in sections)
    states = simulatability.sample(held_out, config.simulate, config.seed)
    records, score = simulatability.simulate(backend, policy, explanation, states)
    reader = (
        "the offline reader, which applies the decision list it finds in the explanation"
        if config.llm == "offline"
        else f"{config.llm}, in a fresh conversation per state"
    )
    return {
        "reader": reader,
        "system": READER_SYSTEM,
        "first_prompt": reader_prompt(policy, explanation, states[0]),
        "states": records,
    }, score


def run(config: ExplainConfig) -> ExplainResult:
    config.validate()
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    out = Path(config.out or path.parent)
    backend = transcript = None
    if config.llm != "offline":  # a missing key should stop us before any work
        transcript = Transcript(out / PARTIAL, config.resume)
        backend = OpenAIBackend(
            config.llm,
            config.base_url,
            config.temperature,
            config.timeout,
            config.retries,
            config.max_tokens,
            config.context_tokens,
            transcript,
        )
    agent, checkpoint = load_agent(path, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    policy, reference = _policy(config, path, game.name, interface(agent, checkpoint, game))
    dataset_path = Path(checkpoint.meta["dataset"])
    if reference is None:
        reference, _ = held_out_states(agent, checkpoint, dataset_path, device)
    examples, held_out = _labelled_states(checkpoint, dataset_path, policy)
    backend = backend or OfflineAnalyst(policy, reference, examples)

    if config.frame_index is not None:
        decisions = [_frame_decision(agent, policy, dataset_path, config.frame_index, device)]
    else:
        decisions = (
            _rollout_decisions(agent, policy, game, config.decisions, config.seed, device) if config.decisions else []
        )

    shared, questions = context(game, policy), policy_questions(game, policy)
    prompts = [decision_prompt(policy, decision, number) for number, decision in enumerate(decisions, start=1)]
    if config.show_prompts:
        for title, text in [
            ("context", shared),
            *(("policy", q) for q in questions),
            *(("decision", p) for p in prompts),
        ]:
            console.rule(title)
            console.print(text, markup=False, highlight=False)

    sections = _policy_sections(backend, shared, questions, policy, reference)
    records = [
        _decision_record(backend, shared, prompt, decision, number, policy)
        for number, (decision, prompt) in enumerate(zip(decisions, prompts), start=1)
    ]
    simulation, score = _simulation(backend, config, policy, sections, held_out)
    answers = [*sections, *records]
    check = faithfulness.summarise(
        [claim for answer in answers for claim in answer["claims"]],
        sum(len(answer["disagreements"]) for answer in answers),
        [record["counterfactual"] for record in records],
    )
    document = {
        "run": str(path),
        "game": game.name,
        "llm": config.llm,
        "temperature": config.temperature,
        "continuous": policy.continuous,
        "output_format": backend.output_format,
        "max_tokens": config.max_tokens,
        "context_tokens": config.context_tokens,
        "equations": {name: str(e) for name, e in zip(policy.actions, policy.expressions)},
        "context": shared,
        "policy": sections,
        "decisions": records,
        "simulation": simulation,
        "faithfulness": {**check, "truncated": sum(answer["truncated"] for answer in answers), "simulatability": score},
    }
    files = [
        write_atomically(out / record["picture"], png_bytes(decision_picture(policy, decision)))
        for record, decision in zip(records, decisions)
    ]
    files.append(write_atomically(out / "explanation.json", json.dumps(document, indent=2)))
    files.append(write_atomically(out / "explanation.md", markdown(document)))
    if transcript:
        transcript.finish()
    return ExplainResult(files, document["faithfulness"], document)


def markdown(document: dict) -> str:
    writer = "the offline analyst" if document["llm"] == "offline" else document["llm"]
    lines = [
        f"# Explanation of the {document['game']} policy",
        "",
        f"Run `{document['run']}`, written by {writer}.",
        "",
        "## Equations",
        "",
        "```",
    ]
    kind = "mean" if document["continuous"] else "logit"
    lines += [f"{kind}_{name} = {expression}" for name, expression in document["equations"].items()]
    lines += ["```", "", "## Policy", ""]
    for section in document["policy"]:
        lines += [f"### {section['action'] or 'Summary'}", "", section["answer"], "", *_notes(section, document)]
    if document["decisions"]:
        lines += ["## Decisions", ""]
    for record in document["decisions"]:
        lines += [
            f"### Decision {record['number']}: {record['action']} ({record['source']})",
            "",
            f"![decision {record['number']}]({record['picture']})",
            "",
            *_gradient_table(record, document["continuous"]),
        ]
        lines += [
            "",
            record["answer"],
            "",
            *_notes(record, document),
            _counterfactual_line(record["counterfactual"], document["continuous"]),
            "",
        ]
    check = document["faithfulness"]
    if document["simulation"]:
        score = check["simulatability"]
        lines += [
            "## Simulatability",
            "",
            f"A reader that sees only the explanation above and one state (the values of the variables, not the "
            f"equations) predicted the equations' action in {round(score['accuracy'] * score['states'])} of "
            f"{score['states']} held-out states: **{score['accuracy']:.1%}** (chance {score['chance']:.1%}; always "
            f"{score['majority_action']}, the most frequent action, {score['majority']:.1%}). The reader: "
            f"{document['simulation']['reader']}.",
            "",
        ]
    lines += ["## Faithfulness", ""]
    if check["claims"]:
        lines.append(
            f"{check['claims']} claims checked against the equations: {check['supported']} supported, "
            f"{check['contradicted']} contradicted, {check['unsupported']} unsupported."
        )
    else:
        lines.append(
            "**No claim could be checked**: no answer gave a claims block that reads, and no prose names a "
            "variable with a direction."
        )
    if check["problems"]:
        lines += [
            "",
            *(
                f'- **{p["verdict"]}**: "{p["text"]}" ({p["variable"]} {p["direction"]} {p["action"]}): {p["reason"]}'
                for p in check["problems"]
            ),
        ]
    disagreements = [d for answer in [*document["policy"], *document["decisions"]] for d in answer["disagreements"]]
    if disagreements:
        lines += [
            "",
            "Where the prose says what the claims block does not:",
            "",
            *(
                f'- "{d["text"]}": the prose says {d["variable"]} {d["prose"]} {d["action"]}, the claims block '
                f"{' and '.join(d['claims_block']) if d['claims_block'] else 'nothing about it'}"
                for d in disagreements
            ),
        ]
    tested = check["counterfactuals"]
    if tested["checked"]:
        lines += [
            "",
            f"Counterfactuals: the most influential variable of {tested['confirmed']} of {tested['checked']} "
            f"decisions moves the action the way the explanation says.",
        ]
    return "\n".join(lines) + "\n"


def _notes(answer: dict, document: dict) -> list[str]:
    """What a reader of an answer should know about how it was made and read."""
    notes = []
    if answer["truncated"]:
        notes.append(
            f'_Cut off (finish_reason "length") at --max-tokens {document["max_tokens"]}, or where the server\'s '
            "context ran out: the rest of this answer is missing._"
        )
    if answer["left_out"]:
        notes.append(
            f"_Asked without the {answer['left_out']} earliest exchanges of the dialogue, to fit "
            f"--context-tokens {document['context_tokens']}._"
        )
    block = answer["claims_block"]
    if answer["claims_from"] == "prose":
        notes.append(
            f"_No claims block read ({block['status']}"
            + (f": {block['problems'][0]}" if block["problems"] else "")
            + "); the prose's claims were checked._"
        )
    elif block["problems"]:
        notes.append(f"_The claims block read in part: {'; '.join(block['problems'])}._")
    return [line for note in notes for line in (note, "")]


def _counterfactual_line(test: dict, continuous: bool) -> str:
    if "verdict" not in test:
        return f"Counterfactual: not checked ({test['reason']})."
    moved = test["action"] if continuous else f"p({test['action']})"
    said = {
        "confirmed": "as the explanation says",
        "refuted": f"not as the explanation says ({test['direction']})",
        "no change": "it does not move",
    }[test["verdict"]]
    line = (
        f"Counterfactual: {test['variable']} + {test['step']:g} moves {moved} from {test['before']:.6f} to "
        f"{test['after']:.6f} ({test['change']:+.2g}): {test['verdict']}, {said}."
    )
    if test["largest"] != test["variable"]:
        return line + (
            f" Yet {test['largest']} moves it more: by {test['largest_span']:+.2g} from -{test['step']:g} to "
            f"+{test['step']:g}, against {test['span']:+.2g}."
        )
    return line + " No other variable moves it more."


def _gradient_table(record: dict, continuous: bool) -> list[str]:
    """A decision's variables, values and gradients: of log p(action), or of every action value."""
    if not continuous:
        rows = [(v["name"], v["value"], [v["gradient"]]) for v in record["variables"]]
        return gradient_table(rows, ["gradient of log p"], quote="`")
    actions = list(record["actions"])
    rows = [(v["name"], v["value"], [v["gradients"][a] for a in actions]) for v in record["variables"]]
    return gradient_table(rows, [f"d {a}" for a in actions], quote="`")
