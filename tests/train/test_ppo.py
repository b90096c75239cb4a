import torch

from insight_cli.train.ppo import compute_gae


def reference_gae(rewards, values, dones, next_value, next_done, gamma, lam):
    steps = len(rewards)
    advantages = [0.0] * steps
    running = 0.0
    for t in reversed(range(steps)):
        nonterminal = 1.0 - (next_done if t == steps - 1 else dones[t + 1])
        following = next_value if t == steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * following * nonterminal - values[t]
        running = delta + gamma * lam * nonterminal * running
        advantages[t] = running
    return advantages


def test_gae_matches_the_recursion_and_stops_at_episode_ends():
    rewards = torch.tensor([[1.0], [0.0], [2.0], [0.5]])
    values = torch.tensor([[0.5], [0.2], [1.0], [0.3]])
    dones = torch.tensor([[0.0], [0.0], [1.0], [0.0]])  # obs 2 starts a new episode
    advantages, returns = compute_gae(rewards, values, dones, torch.tensor([0.7]), torch.tensor([0.0]), 0.9, 0.8)
    expected = reference_gae(rewards[:, 0].tolist(), values[:, 0].tolist(), dones[:, 0].tolist(), 0.7, 0.0, 0.9, 0.8)
    assert torch.allclose(advantages[:, 0], torch.tensor(expected))
    assert torch.allclose(returns, advantages + values)
    # step 1 ends an episode: its advantage is its own reward minus its value only
    assert torch.isclose(advantages[1, 0], torch.tensor(0.0 - 0.2))


def test_gae_with_lambda_one_and_gamma_one_is_return_minus_value():
    rewards = torch.ones(5, 2)
    values = torch.zeros(5, 2)
    advantages, _ = compute_gae(rewards, values, torch.zeros(5, 2), torch.zeros(2), torch.ones(2), 1.0, 1.0)
    assert torch.equal(advantages[:, 0], torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0]))
