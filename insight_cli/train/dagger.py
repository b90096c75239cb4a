"""The DAgger phase that ends a run with --dagger-share (docs/design.md §9): the EQL actor plays
greedily, every state it reaches joins a memory labelled with the neural actor's logits there,
and each update it learns from the whole memory; the run keeps the EQL actor that played best.

Why this shape, measured on Pong (a +20 neural actor, the cpu preset): learning once from each
new rollout, with the learning rate annealed to 0, left the EQL actor at -19.1 (run 8); the
same teacher's choices aggregated over every state the student had reached, with a fixed
rate, took it to +14.5 in the fourth round, and the rounds after swung between -17.8 and +5.8:
hence the memory and keeping the best rather than the last. At a rate held for the whole phase
its evaluations still swung to the end (run 11: -21 to -5.5), so the rate is annealed over the
phase again (`stage.schedule`), and each update fits the memory harder than one PPO update
fits its rollout: the memory grows to hundreds of thousands of states, the EQL actor is tiny.
That still swung to the end (run 12: -21 to -2.5), so the best kept is what the run ends with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from insight_cli.perception.model import PerceptionOutput
from insight_cli.train.agent import Agent
from insight_cli.train.eql import eql_penalty
from insight_cli.train.ppo import PpoSettings, Rollout, effect_choices, imitation_loss, rollout_outputs

MEMORY_STATES = 500_000  # the most states kept (Pong's cpu preset visits 500k in its phase) ...
MEMORY_VALUES = 2**26  # ... and the most input values (256 MB of float32: wide inputs keep fewer)
EVALUATIONS = 20  # evaluations of the EQL actor in the phase: the candidates for the best
STEPS = 64  # optimiser steps per DAgger update ...
BATCH = 1024  # ... each on this many states drawn from the memory (16x a PPO update's samples)


class DaggerMemory:
    """The EQL actor's inputs on every state it has visited in the phase (the newest, up to a
    capacity), each with the neural actor's logits there. A ring buffer allocated on the first
    add: each update writes its states in place of the oldest instead of copying the memory."""

    def __init__(self, capacity: int = MEMORY_STATES):
        self.capacity = capacity
        self.inputs: torch.Tensor | None = None  # (capacity, V), rows [0, len) filled
        self.teacher: torch.Tensor | None = None  # (capacity, A)
        self._filled = 0
        self._next = 0  # the row the next state goes to

    def __len__(self) -> int:
        return self._filled

    def add(self, inputs: torch.Tensor, teacher: torch.Tensor) -> None:
        if self.inputs is None:
            capacity = max(len(inputs), min(self.capacity, MEMORY_VALUES // max(inputs.shape[1], 1)))
            self.inputs = inputs.new_empty((capacity, inputs.shape[1]))
            self.teacher = teacher.new_empty((capacity, teacher.shape[1]))
        capacity = len(self.inputs)
        inputs, teacher = inputs[-capacity:], teacher[-capacity:]
        rows = (self._next + torch.arange(len(inputs), device=self.inputs.device)) % capacity
        self.inputs[rows], self.teacher[rows] = inputs, teacher
        self._next = (self._next + len(inputs)) % capacity
        self._filled = min(self._filled + len(inputs), capacity)

    def sample(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` states drawn uniformly, with replacement: inputs (count, V), logits (count, A)."""
        rows = torch.randint(len(self), (count,), generator=generator, device=generator.device)
        rows = rows.to(self.inputs.device)
        return self.inputs[rows], self.teacher[rows]


@dataclass
class BestEql:
    """The EQL actor with the best evaluation return so far in the phase (a later one wins a tie)."""

    update: int = 0
    scores: dict = field(default_factory=dict)  # its whole evaluation
    state: dict | None = None  # its weights

    @property
    def score(self) -> float:
        return self.scores.get("eval/eql_return", -math.inf)

    def offer(self, scores: dict, update: int, eql: nn.Module) -> None:
        score = scores.get("eval/eql_return", math.nan)
        if math.isfinite(score) and score >= self.score:
            self.update, self.scores = update, dict(scores)
            self.state = {name: tensor.detach().clone() for name, tensor in eql.state_dict().items()}

    def restore(self, eql: nn.Module) -> bool:
        """Put the best EQL actor's weights back; False when the phase had no evaluation."""
        if self.state is None:
            return False
        eql.load_state_dict(self.state)
        return True

    def to_dict(self) -> dict:
        return {"update": self.update, "scores": self.scores, "state": self.state}

    @classmethod
    def from_dict(cls, saved: dict | None) -> BestEql:
        return cls(**saved) if saved else cls()


def dagger_update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    memory: DaggerMemory,
    settings: PpoSettings,
    reg_weight: float,
    reduce_gradients: Callable[[], None],
    generator: torch.Generator,
    perceived: PerceptionOutput | None = None,
) -> dict[str, float]:
    """One DAgger update on a rollout the EQL actor played: its states join `memory` with the
    neural actor's logits there, then the EQL actor alone takes STEPS steps on BATCH states
    drawn from the whole memory, under the sparsity penalty. Imitating on
    the teacher's states alone leaves the student lost where its first mistakes take it
    (measured on Pong: 85% agreement on the neural actor's states, -20.7 playing itself).
    `agreement` is measured on the new states, before the update: how often the student,
    playing itself, already chose as its teacher would."""
    batch_size = rollout.logprobs.numel()
    minibatch_size = batch_size // settings.num_minibatches
    states = rollout.states.flatten(0, 1)
    inputs, teacher = [], []
    with torch.no_grad():  # the teacher and the perception stay as they are
        for start in range(0, batch_size, minibatch_size):
            mb = torch.arange(start, min(start + minibatch_size, batch_size), device=states.device)
            out = rollout_outputs(agent, rollout, mb, perceived)
            inputs.append(agent.eql_inputs(out.coordinates, states[mb]))
            teacher.append(out.neural_logits.float())
        inputs, teacher = torch.cat(inputs), torch.cat(teacher)
        totals: dict[str, float] = {}
        if not agent.config.continuous:
            effect = torch.as_tensor(settings.effects or range(agent.config.n_actions), device=teacher.device)
            agree = effect_choices(agent.eql(inputs), effect) == effect_choices(teacher, effect)
            totals["agreement"] = float(agree.float().mean())
    memory.add(inputs, teacher)
    for _ in range(STEPS):
        batch_inputs, batch_teacher = memory.sample(BATCH, generator)
        distill_loss = imitation_loss(agent.eql(batch_inputs), batch_teacher, agent.config.continuous, settings.effects)
        reg_loss = eql_penalty(agent.eql)
        optimizer.zero_grad(set_to_none=True)
        (distill_loss + reg_weight * reg_loss).backward()
        reduce_gradients()
        nn.utils.clip_grad_norm_(agent.eql.parameters(), settings.max_grad_norm)
        optimizer.step()
    totals.update(distill_loss=float(distill_loss.detach()), reg_loss=float(reg_loss.detach()))
    totals["dagger_memory"] = float(len(memory))
    return totals
