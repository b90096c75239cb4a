import math

import torch
from torch import nn

from insight_cli.train.dagger import BestEql, DaggerMemory, dagger_update
from tests.train.test_ppo import random_rollout


def test_the_memory_keeps_the_newest_states_up_to_its_capacity():
    memory = DaggerMemory(capacity=5)
    for start in (0, 3, 6):
        rows = torch.arange(start, start + 3, dtype=torch.float32).unsqueeze(1)
        memory.add(rows, -rows)
        if start == 0:  # not full yet: only the states added are drawn
            assert set(memory.sample(64, torch.Generator().manual_seed(0))[0].flatten().tolist()) == {0.0, 1.0, 2.0}
    assert len(memory) == 5 and sorted(memory.inputs.flatten().tolist()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    inputs, teacher = memory.sample(64, torch.Generator().manual_seed(0))
    assert inputs.shape == (64, 1) and torch.equal(teacher, -inputs)  # each state with its own label
    assert set(inputs.flatten().tolist()) == {4.0, 5.0, 6.0, 7.0, 8.0}


def test_the_best_eql_actor_is_kept_and_put_back():
    eql, best = nn.Linear(2, 2), BestEql()
    assert not best.restore(eql)  # no evaluation yet: nothing to put back
    best.offer({"eval/eql_return": 3.0}, 10, eql)
    kept = {name: tensor.clone() for name, tensor in eql.state_dict().items()}
    for worse_or_missing, update in (({"eval/eql_return": 1.0}, 20), ({"eval/eql_return": math.nan}, 30), ({}, 40)):
        nn.init.zeros_(eql.weight)
        best.offer(worse_or_missing, update, eql)
    assert best.update == 10 and best.restore(eql) and torch.equal(eql.weight, kept["weight"])
    best.offer({"eval/eql_return": 3.0}, 50, eql)  # a tie: the later, longer trained one wins
    again = BestEql.from_dict(best.to_dict())
    assert (again.update, again.score, again.scores) == (50, 3.0, {"eval/eql_return": 3.0})
    assert BestEql.from_dict(None).update == 0


def test_dagger_learns_only_the_eql_actor_from_every_state_it_has_visited():
    import copy

    from insight_cli.perception.model import PerceptionConfig
    from insight_cli.train.agent import Agent, AgentConfig
    from insight_cli.train.ppo import PpoSettings

    torch.manual_seed(0)
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=32), n_actions=3))
    before = copy.deepcopy(agent)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2)
    memory, settings, generator = DaggerMemory(), PpoSettings(num_minibatches=2), torch.Generator().manual_seed(1)
    rollouts = [random_rollout(agent, 4, 2)[0] for _ in range(3)]
    agreements = []
    for epoch in range(12):
        for rollout in rollouts:
            stats = dagger_update(agent, optimizer, rollout, memory, settings, 1e-4, lambda: None, generator)
            agreements.append(stats["agreement"])
        if epoch == 0:
            assert len(memory) == 3 * 8 and stats["dagger_memory"] == 24
    assert len(memory) == 36 * 8  # every visit joins the memory
    assert sum(agreements[-3:]) / 3 > max(0.7, sum(agreements[:3]) / 3)  # it learned its teacher's choices
    moved = [name for name, p in agent.named_parameters() if not torch.equal(p, dict(before.named_parameters())[name])]
    assert moved and all(name.startswith("eql.") for name in moved)
