"""The INSIGHT agent: the perception CNN, a neural actor and a critic on its encoder vector, and
an EQL actor on the object coordinates it predicts. One encoder pass serves all three.

Discrete games: each actor gives action logits (a categorical policy). Continuous games
(MetaDrive): each actor gives the means of a squashed Gaussian (action = tanh(u), u normal with
a learned, state-independent standard deviation per actor), and an ego state vector can join the
encoder vector (neural actor, critic) and the coordinates (EQL actor).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from insight_cli.perception.model import PerceptionConfig, PerceptionNet, PerceptionOutput
from insight_cli.train.eql import INVERSE_TEMPERATURE, EqlActor, EqlConfig

NEURAL_HIDDEN = 512
LOG_STD_START = -0.5  # squashed Gaussian: the actors' initial log standard deviation
SPREAD_FLOOR = 0.1  # the least feature spread the heads' scale divides by, times the median one


@dataclass(frozen=True)
class AgentConfig:
    perception: PerceptionConfig
    n_actions: int  # choices (discrete) or action dimensions (continuous)
    n_layers: int = 1
    n_funcs: int = 4
    continuous: bool = False
    state_size: int = 0  # ego state values next to the pixels (0: none)

    def to_dict(self) -> dict:
        """The flat dict a run checkpoint keeps as meta["agent"]: the perception's fields and ours."""
        mine = {field.name: getattr(self, field.name) for field in fields(self) if field.name != "perception"}
        return {**asdict(self.perception), **mine}

    @classmethod
    def from_dict(cls, values: dict) -> AgentConfig:
        """The config of a run checkpoint's meta["agent"] (defaults for what older ones lack)."""
        mine = {field.name: values[field.name] for field in fields(cls) if field.name in values}
        return cls(**{**mine, "perception": PerceptionConfig.from_dict(values)})

    @property
    def eql(self) -> EqlConfig:
        inputs = self.perception.n_objects * 4 * 2 + self.state_size
        sharpening = 1.0 if self.continuous else INVERSE_TEMPERATURE  # continuous means are tanh arguments
        return EqlConfig(inputs, self.n_actions, self.n_layers, self.n_funcs, sharpening)


class AgentOutput(NamedTuple):
    perception: PerceptionOutput
    coordinates: torch.Tensor  # (B, K, 4, 2) clamped, zero where absent: the EQL actor's input
    neural_logits: torch.Tensor  # (B, A) logits, or squashed-Gaussian means when continuous
    eql_logits: torch.Tensor  # (B, A) likewise
    value: torch.Tensor  # (B,)


class SquashedGaussian:
    """a = tanh(u), u ~ N(mean, std). Samples and log-probabilities are of u (what the rollout
    stores; the env gets tanh(u)); the entropy is that of u (the usual estimate)."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.normal = torch.distributions.Normal(mean, log_std.exp().expand_as(mean))

    def sample(self) -> torch.Tensor:
        return self.normal.sample()

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        # log |d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_jacobian = 2.0 * (np.log(2.0) - u - torch.nn.functional.softplus(-2.0 * u))
        return (self.normal.log_prob(u) - log_jacobian).sum(dim=-1)

    def entropy(self) -> torch.Tensor:
        return self.normal.entropy().sum(dim=-1)


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
        inputs = hidden + config.state_size
        self.perception = PerceptionNet(config.perception)
        self.actor = nn.Sequential(
            _layer(nn.Linear(inputs, NEURAL_HIDDEN), np.sqrt(2)),
            nn.ReLU(),
            _layer(nn.Linear(NEURAL_HIDDEN, actions), 0.01),
        )
        self.critic = nn.Sequential(
            _layer(nn.Linear(inputs, NEURAL_HIDDEN), np.sqrt(2)), nn.ReLU(), _layer(nn.Linear(NEURAL_HIDDEN, 1), 1.0)
        )
        self.eql = EqlActor(config.eql)
        if config.continuous:
            self.neural_log_std = nn.Parameter(torch.full((actions,), LOG_STD_START))
            self.eql_log_std = nn.Parameter(torch.full((actions,), LOG_STD_START))
        # The heads see the encoder vector standardised by its mean and spread over the dataset's
        # frames, both fixed when training starts. A pretrained encoder's vector changes little
        # from frame to frame; fed raw, Adam moves every first-layer unit along that common part
        # at once and the heads' ReLUs die (measured on Catch: 1% of the actor's units alive, no
        # learning). Centred but not scaled, what is left varies by about 0.01 per dimension
        # (Pong, the cpu preset), so the heads' outputs hardly depend on the state until their
        # weights have grown 100-fold. Both are a fixed affine map the first layers could absorb.
        self.register_buffer("feature_centre", torch.zeros(hidden))
        self.register_buffer("feature_scale", torch.ones(hidden))

    def forward(self, frames: torch.Tensor, state: torch.Tensor | None = None) -> AgentOutput:
        """(B, 4, 84, 84) uint8 stacks (and (B, S) ego states) -> everything the update needs,
        from one encoder pass."""
        return self.decide(self.perception(frames), state)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Runs written before the heads' feature scale existed did not scale: load them so.
        state_dict.setdefault(prefix + "feature_scale", torch.ones_like(self.feature_scale))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def decide(self, perception: PerceptionOutput, state: torch.Tensor | None = None) -> AgentOutput:
        """The actors and the critic on a perception output (computed now, or kept from the
        rollout while the perception network is frozen)."""
        coordinates = self.perception.object_coordinates(perception)
        features = (perception.features - self.feature_centre) * self.feature_scale
        if self.config.state_size:
            features = torch.cat([features, state], dim=1)
        return AgentOutput(
            perception,
            coordinates,
            self.actor(features),
            self.eql(self.eql_inputs(coordinates, state)),
            self.critic(features).squeeze(-1),
        )

    def eql_inputs(self, coordinates: torch.Tensor, state: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, 4, 2) coordinates (and (B, S) ego states) -> the EQL actor's (B, V) inputs."""
        symbols = coordinates.flatten(1)
        return torch.cat([symbols, state], dim=1) if self.config.state_size else symbols

    @staticmethod
    def scores(out: AgentOutput, actor: str) -> torch.Tensor:
        """The "neural" or the "eql" actor's logits (continuous: pre-tanh means)."""
        return out.neural_logits if actor == "neural" else out.eql_logits

    def policy(self, out: AgentOutput, actor: str):
        """The action distribution of the "neural" or the "eql" actor."""
        scores = self.scores(out, actor).float()
        if not self.config.continuous:
            return torch.distributions.Categorical(logits=scores)
        return SquashedGaussian(scores, self.neural_log_std if actor == "neural" else self.eql_log_std)

    def greedy(self, out: AgentOutput, actor: str) -> torch.Tensor:
        """The actor's most likely action: (B,) choices, or (B, A) squashed means."""
        scores = self.scores(out, actor)
        return torch.tanh(scores.float()) if self.config.continuous else scores.argmax(dim=-1)

    @torch.no_grad()
    def standardise_features(self, frames: torch.Tensor, chunk: int = 256) -> None:
        """Set the heads' feature centre and scale from the encoder vectors of `frames` (B, 4, 84, 84):
        each dimension's mean, and one over its standard deviation, floored at SPREAD_FLOOR times
        the median one so that a dimension that hardly moved on the dataset is not blown up."""
        features = torch.cat(
            [self.perception.encoder(frames[start : start + chunk]) for start in range(0, len(frames), chunk)]
        )
        spread = features.std(dim=0) if len(features) > 1 else torch.ones_like(self.feature_scale)
        floor = (SPREAD_FLOOR * spread.median()).clamp_min(1e-6)
        self.feature_centre.copy_(features.mean(dim=0))
        self.feature_scale.copy_(1.0 / torch.maximum(spread, floor))

    def non_eql_parameters(self) -> list[nn.Parameter]:
        """Everything but the EQL actor: what PPO trains (with neural guidance)."""
        return [p for name, p in self.named_parameters() if not name.startswith("eql.")]

    def head_parameters(self) -> list[nn.Parameter]:
        """Everything but the perception network (which has its own weight decay)."""
        return [p for name, p in self.named_parameters() if not name.startswith("perception.")]


def load_agent(path, device: torch.device, game_name: str | None = None, require_eql: bool = False):
    """The agent of a `run.ckpt`, on `device` and in eval mode, with its checkpoint."""
    from insight_cli.checkpoint import check_sizes, check_weights, expected_weights, load_checkpoint
    from insight_cli.errors import InsightError

    checkpoint = load_checkpoint(path, kind="run")
    if game_name is not None and checkpoint.meta["game"] != game_name:
        raise InsightError(f"{path} plays {checkpoint.meta['game']}, not {game_name}", hint="check --game")
    dims = checkpoint.meta["agent"]
    check_sizes(path, dims, ("n_objects", "hidden", "n_actions", "n_layers", "n_funcs"))
    check_sizes(path, {"state_size": 0, **dims}, ("state_size",), least=0)
    config = AgentConfig.from_dict(dims)
    state = {"feature_scale": torch.ones(config.perception.hidden), **checkpoint.state["agent"]}  # as on loading
    check_weights(path, expected_weights(path, lambda: Agent(config)), state, optional="eql.")
    if require_eql and not any(key.startswith("eql.") for key in state):
        raise InsightError(
            f"{path} is a run without an EQL actor, so it has no equations",
            hint="train one with `insight train` (it always trains an EQL actor)",
        )
    agent = Agent(config)
    agent.load_state_dict(state, strict=False)  # a run without an EQL actor lacks only "eql." weights (checked)
    return agent.to(device).eval(), checkpoint
