"""PPO (CleanRL's Atari recipe) with neural guidance, the EQL sparsity penalty and perception
refinement. `ppo_update` reads top to bottom like the algorithm; GAE is a pure function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from insight_cli.perception.model import PerceptionOutput
from insight_cli.train.agent import Agent
from insight_cli.train.eql import eql_penalty


@dataclass
class PpoSettings:
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.1
    kl_coef: float = 0.0  # a KL penalty next to clipping (the paper's MetaDrive runs: 0.2)
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    neural_guidance: bool = True  # the neural actor acts; the EQL actor imitates it
    distill_weight: float = 1.0
    cnn_loss_weight: float = 2.0
    # For each action the action whose effect it has (`GameSpec.effects`; None: each its own):
    # the EQL actor imitates the neural actor's choice of effect, not of action name.
    effects: tuple[int, ...] | None = None


class Rollout(NamedTuple):
    """T steps of N envs, on the training device."""

    obs: torch.Tensor  # (T, N, 4, 84, 84) uint8
    states: torch.Tensor  # (T, N, S) ego states (S = 0: none)
    actions: torch.Tensor  # (T, N) int64, or (T, N, A) pre-tanh samples when continuous
    logprobs: torch.Tensor  # (T, N)
    rewards: torch.Tensor  # (T, N)
    dones: torch.Tensor  # (T, N) 1.0 where obs[t] starts a new episode
    values: torch.Tensor  # (T, N)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation. rewards, values, dones: (T, N); next_value,
    next_done: (N,) for the observation after the last step. Returns advantages and returns."""
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last_advantage = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        if t == steps - 1:
            next_nonterminal, next_values = 1.0 - next_done, next_value
        else:
            next_nonterminal, next_values = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_values * next_nonterminal - values[t]
        last_advantage = delta + gamma * gae_lambda * next_nonterminal * last_advantage
        advantages[t] = last_advantage
    return advantages, advantages + values


def imitation_loss(
    student: torch.Tensor, teacher: torch.Tensor, continuous: bool, effects: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Neural guidance: the EQL actor learns to pick the neural actor's favourite action
    (continuous: to match its means). With `effects`, actions of the same effect count as one
    choice: the target is the effect the teacher gives most probability to, and the student
    is rewarded for its probability of any action with that effect. Why: a teacher may split
    actions that do the same at random from state to state (Pong's NOOP and FIRE), and
    reproducing such a split costs the EQL actor its fit. (RIGHT and RIGHTFIRE were taken for
    one effect too until they were found to differ where the paddle meets the ball: games.py.)
    `student`, `teacher`: (B, A) the EQL and the neural actor's logits (continuous: means)."""
    teacher, student = teacher.detach().float(), student.float()
    if continuous:
        return F.mse_loss(student, teacher)
    if effects is None:
        return F.cross_entropy(student, teacher.argmax(dim=-1))
    effect = torch.as_tensor(effects, device=teacher.device)
    target = effect_choices(teacher, effect)
    same = effect.unsqueeze(0) == target.unsqueeze(1)  # (B, A): the actions with the target's effect
    return -torch.logsumexp(F.log_softmax(student, dim=-1).masked_fill(~same, float("-inf")), dim=-1).mean()


def effect_choices(logits: torch.Tensor, effect: torch.Tensor) -> torch.Tensor:
    """(B,) the effect (its representative action) with the most probability under (B, A) `logits`."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    return torch.zeros_like(probabilities).index_add_(1, effect, probabilities).argmax(dim=-1)


def rollout_outputs(agent: Agent, rollout: Rollout, mb: torch.Tensor, perceived: PerceptionOutput | None):
    """The agent's outputs on minibatch `mb` of the flattened rollout: one encoder pass for
    critic, neural and EQL actor, or none when the rollout's perception outputs are kept."""
    if perceived is None:
        return agent(rollout.obs.flatten(0, 1)[mb], rollout.states.flatten(0, 1)[mb])
    return agent.decide(PerceptionOutput(*(part[mb] for part in perceived)), rollout.states.flatten(0, 1)[mb])


def ppo_update(
    agent: Agent,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    settings: PpoSettings,
    reg_weight_now: float,
    perception_loss_fn: Callable[[], torch.Tensor] | None,
    reduce_gradients: Callable[[], None],
    generator: torch.Generator,
    perceived: PerceptionOutput | None = None,
) -> dict[str, float]:
    """One PPO update over a rollout. `perception_loss_fn` draws a dataset batch and returns
    its perception loss (None: no refinement); `reduce_gradients` averages gradients across
    data-parallel ranks; `perceived` holds the rollout's perception outputs, (T * N, ...), when
    the perception network is frozen: they are the same every epoch, so the update reuses them."""
    batch_size = rollout.logprobs.numel()
    minibatch_size = batch_size // settings.num_minibatches
    b_actions, b_logprobs = rollout.actions.flatten(0, 1), rollout.logprobs.flatten()
    acting = "neural" if settings.neural_guidance else "eql"
    b_advantages, b_returns, b_values = advantages.flatten(), returns.flatten(), rollout.values.flatten()
    totals: dict[str, float] = {}
    clipfracs = []
    for epoch in range(settings.update_epochs):
        order = torch.randperm(batch_size, generator=generator, device=generator.device).to(b_actions.device)
        for start in range(0, batch_size, minibatch_size):
            mb = order[start : start + minibatch_size]
            out = rollout_outputs(agent, rollout, mb, perceived)
            distribution = agent.policy(out, acting)
            newlogprob = distribution.log_prob(b_actions[mb])
            entropy = distribution.entropy()
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            approx_kl = ((ratio - 1) - logratio).mean()
            with torch.no_grad():
                clipfracs.append(((ratio - 1.0).abs() > settings.clip_coef).float().mean())

            mb_advantages = b_advantages[mb]
            mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
            pg_loss = torch.max(
                -mb_advantages * ratio, -mb_advantages * ratio.clamp(1 - settings.clip_coef, 1 + settings.clip_coef)
            ).mean()

            newvalue = out.value.float()
            v_unclipped = (newvalue - b_returns[mb]) ** 2
            v_clipped = b_values[mb] + (newvalue - b_values[mb]).clamp(-settings.clip_coef, settings.clip_coef)
            v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()

            entropy_loss = entropy.mean()
            loss = pg_loss - settings.ent_coef * entropy_loss + settings.vf_coef * v_loss + settings.kl_coef * approx_kl

            distill_loss = torch.zeros((), device=loss.device)
            if settings.neural_guidance:
                distill_loss = imitation_loss(
                    out.eql_logits, out.neural_logits, agent.config.continuous, settings.effects
                )
                loss = loss + settings.distill_weight * distill_loss

            # Sparsity: the smoothed L1/2 penalty, its weight ramping up over training.
            reg_loss = eql_penalty(agent.eql)
            loss = loss + reg_weight_now * reg_loss

            # Perception refinement: keep coordinates grounded in the segmented dataset while the
            # RL and guidance gradients move them (every minibatch; the paper did the last epoch).
            cnn_loss = torch.zeros((), device=loss.device)
            if perception_loss_fn is not None:
                cnn_loss = perception_loss_fn()
                loss = loss + settings.cnn_loss_weight * cnn_loss

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            reduce_gradients()
            # The EQL actor's gradients are clipped on their own: under one joint norm its imitation
            # gradients (logits x10, two layers) would shrink every step of the neural actor and critic.
            nn.utils.clip_grad_norm_(list(agent.eql.parameters()), settings.max_grad_norm)
            nn.utils.clip_grad_norm_(agent.non_eql_parameters(), settings.max_grad_norm)
            optimizer.step()

            for name, value in (
                ("policy_loss", pg_loss),
                ("value_loss", v_loss),
                ("entropy", entropy_loss),
                ("approx_kl", approx_kl),
                ("distill_loss", distill_loss),
                ("reg_loss", reg_loss),
                ("cnn_loss", cnn_loss),
            ):
                totals[name] = float(value.detach())  # the last minibatch's values, as CleanRL logs them

    y_pred, y_true = b_values, b_returns
    variance = y_true.var()
    totals["explained_variance"] = float("nan") if variance == 0 else float(1 - (y_true - y_pred).var() / variance)
    totals["clipfrac"] = float(torch.stack(clipfracs).mean())
    return totals
