import torch

from insight_cli.train.ppo import compute_gae, effect_choices, imitation_loss


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


def random_rollout(agent, steps, envs):
    """A rollout of random frames and actions with the agent's own values and log-probabilities."""
    from insight_cli.train.ppo import Rollout

    obs = torch.randint(0, 255, (steps, envs, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        outputs = [agent(obs[t]) for t in range(steps)]
    rollout = Rollout(
        obs,
        torch.zeros(steps, envs, 0),
        torch.randint(0, 3, (steps, envs)),
        torch.stack([torch.log_softmax(o.neural_logits, -1)[:, 0] for o in outputs]),
        torch.randn(steps, envs),
        torch.zeros(steps, envs),
        torch.stack([o.value for o in outputs]),
    )
    return rollout, outputs


def test_an_update_on_the_rollouts_kept_perception_equals_one_that_recomputes_it():
    """While the CNN is frozen the update reuses the rollout's perception outputs instead of
    running the encoder again: the result must be the same update."""
    import copy

    from insight_cli.perception.model import PerceptionConfig, PerceptionOutput
    from insight_cli.train.agent import Agent, AgentConfig
    from insight_cli.train.ppo import PpoSettings, ppo_update

    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=3))
    agent.perception.requires_grad_(False)
    steps, envs = 4, 2
    rollout, outputs = random_rollout(agent, steps, envs)
    kept = PerceptionOutput(*(torch.cat(parts) for parts in zip(*(o.perception for o in outputs))))
    advantages, returns = torch.randn(steps, envs), torch.randn(steps, envs)

    def update(perceived):
        twin = copy.deepcopy(agent)
        optimizer = torch.optim.Adam(twin.head_parameters(), lr=1e-2)
        ppo_update(
            twin,
            optimizer,
            rollout,
            advantages,
            returns,
            PpoSettings(num_minibatches=2),
            1e-3,
            None,
            lambda: None,
            torch.Generator().manual_seed(3),
            perceived,
        )
        return twin

    recomputed, reused = update(None), update(kept)
    moved = [
        name for name, p in agent.named_parameters() if not torch.equal(p, dict(recomputed.named_parameters())[name])
    ]
    assert moved and not any(name.startswith("perception.") for name in moved)
    for (name, a), b in zip(recomputed.named_parameters(), reused.parameters()):
        assert torch.allclose(a, b, atol=1e-5), name


def test_the_kl_penalty_reaches_the_update():
    import copy

    from insight_cli.perception.model import PerceptionConfig
    from insight_cli.train.agent import Agent, AgentConfig
    from insight_cli.train.ppo import PpoSettings, Rollout, ppo_update

    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=2, continuous=True))
    steps, envs = 4, 2
    obs = torch.randint(0, 255, (steps, envs, 4, 84, 84), dtype=torch.uint8)
    raw = torch.randn(steps, envs, 2)
    with torch.no_grad():
        logprobs = torch.stack([agent.policy(agent(obs[t]), "neural").log_prob(raw[t]) for t in range(steps)])
    rollout = Rollout(
        obs,
        torch.zeros(steps, envs, 0),
        raw,
        logprobs,
        torch.randn(steps, envs),
        torch.zeros(steps, envs),
        torch.zeros(steps, envs),
    )

    def actor_after(kl_coef):
        twin = copy.deepcopy(agent)
        optimizer = torch.optim.SGD(twin.head_parameters(), lr=0.5)
        ppo_update(
            twin,
            optimizer,
            rollout,
            torch.randn(steps, envs),
            torch.randn(steps, envs),
            PpoSettings(num_minibatches=1, update_epochs=3, kl_coef=kl_coef),
            0.0,
            None,
            lambda: None,
            torch.Generator().manual_seed(3),
        )
        return twin.actor[2].weight

    assert not torch.allclose(actor_after(0.0), actor_after(5.0))


def test_the_eql_actors_imitation_does_not_change_the_neural_actors_update():
    """With neural guidance PPO trains the neural actor and critic; the EQL actor's imitation
    loss must not move them (not even through a shared gradient-norm clip)."""
    import copy

    from insight_cli.perception.model import PerceptionConfig
    from insight_cli.train.agent import Agent, AgentConfig
    from insight_cli.train.ppo import PpoSettings, ppo_update

    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=3, n_layers=2))
    agent.perception.requires_grad_(False)
    steps, envs = 4, 2
    rollout, outputs = random_rollout(agent, steps, envs)
    advantages, returns = torch.randn(steps, envs), 100 * torch.randn(steps, envs)

    def update(distill_weight):
        twin = copy.deepcopy(agent)
        optimizer = torch.optim.SGD(twin.head_parameters(), lr=1e-2)  # SGD: any change of scale shows
        settings = PpoSettings(num_minibatches=2, distill_weight=distill_weight)
        ppo_update(
            twin,
            optimizer,
            rollout,
            advantages,
            returns,
            settings,
            0.0,
            None,
            lambda: None,
            torch.Generator().manual_seed(3),
        )
        return dict(twin.named_parameters())

    guided, alone = update(100.0), update(0.0)
    for name, parameter in guided.items():
        if name.startswith("eql."):
            assert not torch.equal(parameter, alone[name]), name  # the EQL actor did learn
        else:
            assert torch.allclose(parameter, alone[name], atol=1e-6), name


# Six actions, three of them aliases (as Pong's NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE were once taken to be).
ALIASED_EFFECTS = (0, 0, 2, 3, 2, 3)


def _imitation(teacher: list[float], student: list[float], effects=ALIASED_EFFECTS) -> float:
    return float(imitation_loss(torch.tensor([student]).log(), torch.tensor([teacher]).log(), False, effects))


def test_the_eql_actor_imitates_the_teachers_effect_not_its_action_name():
    # the teacher moves up (RIGHT 0.3 + RIGHTFIRE 0.3 = 0.6), though NOOP is its likeliest single action
    teacher = [0.4, 0.0, 0.3, 0.0, 0.3, 0.0]
    up_by_either_name = _imitation(teacher, [0.05, 0.05, 0.1, 0.05, 0.7, 0.05])
    up_by_the_other = _imitation(teacher, [0.05, 0.05, 0.7, 0.05, 0.1, 0.05])
    staying = _imitation(teacher, [0.7, 0.05, 0.05, 0.1, 0.05, 0.05])
    assert abs(up_by_either_name - up_by_the_other) < 1e-6 and abs(up_by_either_name + torch.tensor(0.8).log()) < 1e-5
    assert staying > up_by_either_name
    # without effects, the target is the likeliest action name: NOOP
    assert _imitation(teacher, [0.7, 0.05, 0.05, 0.1, 0.05, 0.05], None) < _imitation(
        teacher, [0.05, 0.05, 0.1, 0.05, 0.7, 0.05], None
    )


def test_the_choice_of_effect_sums_the_probabilities_of_actions_with_that_effect():
    logits = torch.tensor([[0.4, 0.0, 0.3, 0.0, 0.3, 0.0], [0.1, 0.1, 0.1, 0.5, 0.1, 0.1]]).clamp_min(1e-9).log()
    assert effect_choices(logits, torch.tensor(ALIASED_EFFECTS)).tolist() == [2, 3]
    assert effect_choices(logits, torch.arange(6)).tolist() == [0, 3]
