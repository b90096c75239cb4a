import torch

from insight_cli.perception.model import PerceptionConfig
from insight_cli.train.agent import SPREAD_FLOOR, Agent, AgentConfig, SquashedGaussian


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


def test_the_heads_see_the_encoder_vector_standardised_on_the_given_frames():
    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32, encoder="nature"), n_actions=3))
    with torch.no_grad():
        agent.perception.encoder.project[-1].weight[0] = 1e-6  # a dimension that hardly moves
    frames = torch.randint(0, 255, (64, 4, 84, 84), dtype=torch.uint8)
    agent.standardise_features(frames, chunk=16)
    with torch.no_grad():
        raw = agent.perception.encoder(frames)
        seen = (raw - agent.feature_centre) * agent.feature_scale
    spread = raw.std(dim=0)
    moving = spread >= SPREAD_FLOOR * spread.median()
    assert seen.mean(dim=0).abs().max() < 1e-4
    assert torch.allclose(seen.std(dim=0)[moving], torch.ones(int(moving.sum())), atol=1e-4)
    # a dimension that hardly moved is scaled like one at the floor, not blown up to unit spread
    assert not moving[0]
    assert torch.isclose(agent.feature_scale[0], 1.0 / (SPREAD_FLOOR * spread.median()), rtol=1e-4)


def test_a_run_saved_before_the_feature_scale_existed_loads_unscaled():
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=3))
    agent.feature_scale.fill_(2.0)
    old = {name: tensor for name, tensor in agent.state_dict().items() if name != "feature_scale"}
    agent.load_state_dict(old)
    assert torch.equal(agent.feature_scale, torch.ones(32))
