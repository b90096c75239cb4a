import torch

from insight_cli.perception.model import PerceptionConfig
from insight_cli.train.agent import Agent, AgentConfig, SquashedGaussian


def test_squashed_gaussian_log_prob_is_that_of_tanh_of_a_normal():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 2), torch.randn(2) * 0.3
    policy = SquashedGaussian(mean, log_std)
    u = policy.sample()
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.TanhTransform()]
    )
    expected = reference.log_prob(torch.tanh(u)).sum(dim=-1)
    assert torch.allclose(policy.log_prob(u), expected, atol=1e-4)
    assert policy.entropy().shape == (5,)


def test_a_continuous_agent_reads_the_ego_state_and_acts_within_bounds():
    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=2, continuous=True, state_size=3))
    frames = torch.randint(0, 255, (4, 4, 84, 84), dtype=torch.uint8)
    state = torch.rand(4, 3)
    out = agent(frames, state)
    assert out.neural_logits.shape == out.eql_logits.shape == (4, 2) and out.value.shape == (4,)
    assert agent.eql.config.n_inputs == 2 * 4 * 2 + 3
    for actor in ("neural", "eql"):
        greedy = agent.greedy(out, actor)
        assert greedy.shape == (4, 2) and greedy.abs().max() < 1
        assert agent.policy(out, actor).log_prob(agent.policy(out, actor).sample()).shape == (4,)
    changed = agent(frames, state + 1.0)  # the ego state reaches the actors and the critic
    assert not torch.allclose(changed.eql_logits, out.eql_logits) and not torch.allclose(changed.value, out.value)
