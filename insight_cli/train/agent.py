"""The INSIGHT agent: the perception CNN, a neural actor and a critic on its encoder vector, and
an EQL actor on the object coordinates it predicts. One encoder pass serves all three."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from insight_cli.perception.model import PerceptionConfig, PerceptionNet, PerceptionOutput
from insight_cli.train.eql import EqlActor, EqlConfig

NEURAL_HIDDEN = 512


@dataclass(frozen=True)
class AgentConfig:
    perception: PerceptionConfig
    n_actions: int
    n_layers: int = 1
    n_funcs: int = 4

    @property
    def eql(self) -> EqlConfig:
        return EqlConfig(self.perception.n_objects * 4 * 2, self.n_actions, self.n_layers, self.n_funcs)


class AgentOutput(NamedTuple):
    perception: PerceptionOutput
    coordinates: torch.Tensor  # (B, K, 4, 2) clamped, zero where absent: the EQL actor's input
    neural_logits: torch.Tensor  # (B, A)
    eql_logits: torch.Tensor  # (B, A)
    value: torch.Tensor  # (B,)


def _layer(layer: nn.Linear, std: float) -> nn.Linear:
    """Orthogonal weights and zero bias, as in CleanRL's PPO."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class Agent(nn.Module):
    def __init__(self, config: AgentConfig):
        super().__init__()
        self.config = config
        hidden, actions = config.perception.hidden, config.n_actions
        self.perception = PerceptionNet(config.perception)
        self.actor = nn.Sequential(
            _layer(nn.Linear(hidden, NEURAL_HIDDEN), np.sqrt(2)), nn.ReLU(), _layer(nn.Linear(NEURAL_HIDDEN, actions), 0.01)
        )
        self.critic = nn.Sequential(
            _layer(nn.Linear(hidden, NEURAL_HIDDEN), np.sqrt(2)), nn.ReLU(), _layer(nn.Linear(NEURAL_HIDDEN, 1), 1.0)
        )
        self.eql = EqlActor(config.eql)

    def forward(self, frames: torch.Tensor) -> AgentOutput:
        """(B, 4, 84, 84) uint8 stacks -> everything the update needs, from one encoder pass."""
        return self.decide(self.perception(frames))

    @property
    def perception_frozen(self) -> bool:
        return not any(parameter.requires_grad for parameter in self.perception.parameters())

    def decide(self, perception: PerceptionOutput) -> AgentOutput:
        """The actors and the critic on a perception output (computed now, or cached while the
        perception network is frozen)."""
        coordinates = self.perception.object_coordinates(perception)
        return AgentOutput(
            perception,
            coordinates,
            self.actor(perception.features),
            self.eql(coordinates),
            self.critic(perception.features).squeeze(-1),
        )

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything but the perception network (which has its own weight decay)."""
        return [p for name, p in self.named_parameters() if not name.startswith("perception.")]


def load_agent(path, device: torch.device, game_name: str | None = None, require_eql: bool = False):
    """The agent of a `run.ckpt`, on `device` and in eval mode, with its checkpoint."""
    from insight_cli.checkpoint import load_checkpoint
    from insight_cli.errors import InsightError

    checkpoint = load_checkpoint(path, kind="run")
    if game_name is not None and checkpoint.meta["game"] != game_name:
        raise InsightError(f"{path} plays {checkpoint.meta['game']}, not {game_name}", hint="check --game")
    state = checkpoint.state["agent"]
    if require_eql and not any(key.startswith("eql.") for key in state):
        raise InsightError(f"{path} is a run without an EQL actor, so it has no equations",
                           hint="train one with `insight train` (it always trains an EQL actor)")
    dims = checkpoint.meta["agent"]
    config = AgentConfig(
        PerceptionConfig(dims["n_objects"], dims["hidden"], dims["threshold"]), dims["n_actions"], dims["n_layers"], dims["n_funcs"]
    )
    agent = Agent(config)
    missing, unexpected = agent.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("eql.") for key in missing):
        raise InsightError(f"{path} holds weights that do not fit its agent description", hint="is the file damaged?")
    return agent.to(device).eval(), checkpoint
