"""`insight explain`: explain the run's extracted policy and some of its decisions in plain
language (an LLM, or the offline analyst), check every claim against the equations, and write
explanation.md, explanation.json and one picture per decision (DESIGN §6)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from insight_cli.dataset import load_dataset
from insight_cli.errors import UsageError
from insight_cli.evaluate.episodes import agent_actor, watch_episode
from insight_cli.explain import faithfulness
from insight_cli.explain.backends import OfflineAnalyst, OpenAIBackend
from insight_cli.explain.prompts import Decision, context, decision_prompt, policy_questions
from insight_cli.extract_policy import MAX_TERMS
from insight_cli.extract_policy.export import read_policy, read_policy_for
from insight_cli.extract_policy.stage import ExtractConfig, held_out_states, interface
from insight_cli.extract_policy.stage import run as extract
from insight_cli.extract_policy.symbolic import Interface, SymbolicPolicy, join
from insight_cli.files import write_atomically
from insight_cli.games import get_game
from insight_cli.pictures import arrow, caption, mark_points, png_bytes, upscale
from insight_cli.progress import console
from insight_cli.runtime import resolve_device, seed_everything
from insight_cli.train.agent import load_agent

ROLLOUT_STEPS = 1000  # decisions are sampled from at most this many steps of a fresh episode
MARKED = 3  # variables with the largest gradients drawn on a decision's picture


@dataclass
class ExplainConfig:
    checkpoint: Path
    llm: str = "offline"  # "offline" or a model name served by an OpenAI-compatible API
    decisions: int = 3  # decisions sampled from a fresh rollout
    frame_index: int | None = None  # explain this dataset frame instead
    policy: Path | None = None  # policy.json; default: the run's, extracted now if missing
    max_terms: int = MAX_TERMS  # for that extraction: extract-policy's default
    base_url: str | None = None  # default: OPENAI_BASE_URL, else OpenAI
    temperature: float = 0.0
    timeout: float = 60.0  # seconds per LLM request
    retries: int = 3  # LLM retries, with exponential backoff
    show_prompts: bool = False
    out: Path | None = None  # directory; default: the run's
    device: str = "auto"
    seed: int = 0


@dataclass
class ExplainResult:
    files: list[Path]
    faithfulness: dict
    document: dict


def _validate(config: ExplainConfig) -> None:
    if config.decisions < 0:
        raise UsageError(f"--decisions must be at least 0, got {config.decisions}")
    if config.frame_index is not None and config.frame_index < 0:
        raise UsageError(f"--frame-index must be at least 0, got {config.frame_index}")
    if not 0.0 <= config.temperature <= 2.0:
        raise UsageError(f"--temperature must be between 0 and 2, got {config.temperature}")
    if config.timeout <= 0 or config.retries < 0:
        raise UsageError("--timeout must be positive and --retries at least 0")


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
    result = extract(ExtractConfig(checkpoint=path, max_terms=config.max_terms, episodes=0, device=config.device,
                                   seed=config.seed))
    return result.policy, result.held_out


def _decide(policy: SymbolicPolicy, source: str, rgb: np.ndarray, coordinates: np.ndarray,
            state: np.ndarray | None) -> Decision:
    """What the equations do and why in one state: (K, 4, 2) coordinates and the (S,) ego state
    (None unless the policy reads one)."""
    inputs = join(coordinates[None], None if state is None else state[None])
    action = policy.choose(inputs)[0]
    probabilities = None if policy.continuous else policy.probabilities(inputs)[0]
    return Decision(source, rgb, coordinates, inputs[0], action if policy.continuous else int(action), probabilities,
                    policy.sensitivities(inputs)[0])


def _rollout_decisions(agent, policy, game, count: int, seed: int, device) -> list[Decision]:
    """`count` states of one fresh greedy episode (at most ROLLOUT_STEPS), chosen at random."""
    seen = list(watch_episode(agent_actor(agent, "symbolic", policy), game, seed, device, ROLLOUT_STEPS))
    steps = sorted(np.random.default_rng(seed).choice(len(seen), size=min(count, len(seen)), replace=False))
    return [_decide(policy, f"rollout step {step}", seen[step].rgb, seen[step].coordinates,
                    seen[step].state if policy.state_names else None) for step in steps]


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
    return _decide(policy, f"dataset frame {row}", dataset.rgb(row), coordinates.float().cpu().numpy()[0], state)


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


def run(config: ExplainConfig) -> ExplainResult:
    _validate(config)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    path = Path(config.checkpoint)
    backend = None
    if config.llm != "offline":  # a missing key should stop us before any work
        backend = OpenAIBackend(config.llm, config.base_url, config.temperature, config.timeout, config.retries)
    agent, checkpoint = load_agent(path, device, require_eql=True)
    game = get_game(checkpoint.meta["game"])
    policy, reference = _policy(config, path, game.name, interface(agent, checkpoint, game))
    dataset_path = Path(checkpoint.meta["dataset"])
    if reference is None:
        reference, _ = held_out_states(agent, checkpoint, dataset_path, device)
    backend = backend or OfflineAnalyst(policy, reference)

    if config.frame_index is not None:
        decisions = [_frame_decision(agent, policy, dataset_path, config.frame_index, device)]
    else:
        decisions = _rollout_decisions(agent, policy, game, config.decisions, config.seed, device) if config.decisions else []

    shared, questions = context(game, policy), policy_questions(game, policy)
    prompts = [decision_prompt(policy, decision) for decision in decisions]
    if config.show_prompts:
        for title, text in [("context", shared), *(("policy", q) for q in questions), *(("decision", p) for p in prompts)]:
            console.rule(title)
            console.print(text, markup=False, highlight=False)

    answers = backend.policy_dialogue(shared, questions)
    claims, sections = [], []
    for action, answer in zip([*policy.actions, None], answers):
        found = faithfulness.check_policy_text(answer, policy, reference, action)
        claims += found
        sections.append({"action": action, "question": questions[len(sections)], "answer": answer,
                         "claims": [asdict(c) for c in found]})
    decision_records = []
    for number, (decision, prompt) in enumerate(zip(decisions, prompts), start=1):
        answer = backend.decision(shared, prompt, decision)
        default = None if policy.continuous else policy.actions[decision.action]
        found = faithfulness.check_decision_text(answer, policy, decision.gradients, default)
        claims += found
        if policy.continuous:
            taken = {"action": decision.summary(policy), "actions": dict(zip(policy.actions, map(float, decision.action)))}
        else:
            taken = {"action": policy.actions[decision.action],
                     "probabilities": dict(zip(policy.actions, map(float, decision.probabilities)))}
        decision_records.append({
            "number": number, "source": decision.source, **taken,
            "variables": [{"name": policy.variables[i].name, "value": float(decision.inputs[i]),
                           "gradients": dict(zip(policy.actions, map(float, decision.gradients[:, i]))),
                           "gradient": float(decision.gradients[decision.strongest(policy, i), i])}
                          for i in decision.relevant(policy)],
            "prompt": prompt, "answer": answer, "picture": f"decision_{number}.png", "claims": [asdict(c) for c in found],
        })

    document = {
        "run": str(path), "game": game.name, "llm": config.llm, "temperature": config.temperature,
        "continuous": policy.continuous,
        "equations": {name: str(e) for name, e in zip(policy.actions, policy.expressions)},
        "context": shared, "policy": sections, "decisions": decision_records,
        "faithfulness": faithfulness.summarise(claims),
    }
    out = Path(config.out or path.parent)
    files = [write_atomically(out / record["picture"], png_bytes(decision_picture(policy, decision)))
             for record, decision in zip(decision_records, decisions)]
    files.append(write_atomically(out / "explanation.json", json.dumps(document, indent=2)))
    files.append(write_atomically(out / "explanation.md", markdown(document)))
    return ExplainResult(files, document["faithfulness"], document)


def markdown(document: dict) -> str:
    lines = [f"# Explanation of the {document['game']} policy", "",
             f"Run `{document['run']}`, written by {'the offline analyst' if document['llm'] == 'offline' else document['llm']}.",
             "", "## Equations", "", "```"]
    kind = "mean" if document["continuous"] else "logit"
    lines += [f"{kind}_{name} = {expression}" for name, expression in document["equations"].items()]
    lines += ["```", "", "## Policy", ""]
    for section in document["policy"]:
        lines += [f"### {section['action'] or 'Summary'}", "", section["answer"], ""]
    if document["decisions"]:
        lines += ["## Decisions", ""]
    for record in document["decisions"]:
        lines += [f"### Decision {record['number']}: {record['action']} ({record['source']})", "",
                  f"![decision {record['number']}]({record['picture']})", "",
                  *_gradient_table(record, document["continuous"])]
        lines += ["", record["answer"], ""]
    check = document["faithfulness"]
    lines += ["## Faithfulness", "",
              f"{check['claims']} claims checked against the equations: {check['supported']} supported, "
              f"{check['contradicted']} contradicted, {check['unsupported']} unsupported.", ""]
    lines += [f"- **{p['verdict']}**: \"{p['text']}\" ({p['variable']} {p['direction']} {p['action']}): {p['reason']}"
              for p in check["problems"]]
    return "\n".join(lines) + "\n"


def _gradient_table(record: dict, continuous: bool) -> list[str]:
    """A decision's variables, values and gradients: of log p(action), or of every action value."""
    if not continuous:
        return ["| variable | value | gradient of log p |", "| --- | --- | --- |",
                *(f"| `{v['name']}` | {v['value']:.3f} | {v['gradient']:+.3f} |" for v in record["variables"])]
    actions = list(record["actions"])
    return ["| variable | value | " + " | ".join(f"d {a}" for a in actions) + " |", "| --- " * (len(actions) + 2) + "|",
            *(f"| `{v['name']}` | {v['value']:.3f} | " + " | ".join(f"{v['gradients'][a]:+.3f}" for a in actions) + " |"
              for v in record["variables"])]
