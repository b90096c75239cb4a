import torch

from insight_cli.train.eql import (
    BINARY,
    BY_NAME,
    UNARY,
    EqlActor,
    EqlConfig,
    SymbolicLayer,
    eql_penalty,
    smoothed_l_half,
)


def test_primitives():
    u, v = torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5])
    assert torch.equal(BY_NAME["square"].apply(u), torch.tensor([4.0, 1.0]))
    assert torch.equal(BY_NAME["cube"].apply(u), torch.tensor([8.0, -1.0]))
    assert torch.equal(BY_NAME["constant"].apply(u), torch.ones(2))
    assert torch.equal(BY_NAME["identity"].apply(u), u)
    assert torch.equal(BY_NAME["product"].apply(u, v), torch.tensor([6.0, -0.5]))
    assert torch.equal(BY_NAME["add"].apply(u, v), torch.tensor([5.0, -0.5]))


def test_combine_reads_the_rows_as_forward_does():
    layer = SymbolicLayer(3, EqlConfig(n_inputs=3, n_actions=2, n_funcs=1))
    x = torch.rand(4, 3)
    rows = layer.linear(x)
    by_unit = torch.stack(layer.combine([rows[:, row] for row in range(rows.shape[1])]), dim=1)
    assert torch.allclose(by_unit, layer(x))


def test_symbolic_layer_wires_each_unit_to_its_primitive():
    config = EqlConfig(n_inputs=3, n_actions=2, n_funcs=1)  # each primitive twice
    layer = SymbolicLayer(3, config)
    assert layer.n_out == 2 * (len(UNARY) + len(BINARY)) and [unit.name for unit in config.units[:2]] == [
        "square",
        "square",
    ]
    with torch.no_grad():
        layer.linear.weight.zero_()
        layer.linear.bias.copy_(torch.arange(1.0, 17.0))  # arguments 1..16, inputs ignored
    out = layer(torch.zeros(1, 3))[0]
    # unary arguments 1..8: square(1), square(2), cube(3), cube(4), 1, 1, identity(7), identity(8)
    assert out[:8].tolist() == [1, 4, 27, 64, 1, 1, 7, 8]
    # binary (u, v) pairs (9, 10), (11, 12) -> products; (13, 14), (15, 16) -> sums
    assert out[8:].tolist() == [90, 132, 27, 31]


def test_actor_shapes_depth_and_temperature():
    config = EqlConfig(n_inputs=2 * 4 * 2, n_actions=3, n_layers=2, n_funcs=4)
    actor = EqlActor(config)
    assert len(actor.layers) == 2
    coordinates = torch.rand(5, 2, 4, 2)
    logits = actor(coordinates)
    assert logits.shape == (5, 3)
    hidden = coordinates.flatten(1)
    for layer in actor.layers:
        hidden = layer(hidden)
    assert torch.allclose(logits, actor.output(hidden) * 10.0)


def test_smoothed_l_half_matches_sqrt_above_a_and_is_smooth_below():
    a = 0.05
    big = torch.tensor([0.5, -2.0])
    assert torch.allclose(smoothed_l_half(big, a), big.abs().sqrt().sum())
    # continuous at |w| = a, finite slope at 0, and no NaN gradients anywhere
    edge = torch.tensor([a - 1e-6]), torch.tensor([a + 1e-6])
    assert torch.allclose(smoothed_l_half(edge[0], a), smoothed_l_half(edge[1], a), atol=1e-4)
    weights = torch.tensor([0.0, 0.01, -0.03, 0.2, -5.0], requires_grad=True)
    smoothed_l_half(weights, a).backward()
    assert torch.isfinite(weights.grad).all() and weights.grad[0] == 0


def test_penalty_favours_sparse_weights():
    actor = EqlActor(EqlConfig(n_inputs=4, n_actions=2))
    dense = eql_penalty(actor)
    with torch.no_grad():
        for parameter in actor.parameters():
            parameter.mul_((torch.rand_like(parameter) > 0.9).float())
    assert eql_penalty(actor) < dense
