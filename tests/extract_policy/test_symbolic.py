import numpy as np
import pytest
import torch
from support import toward_the_ball

from insight_cli.errors import InsightError
from insight_cli.extract_policy import symbolic
from insight_cli.extract_policy.export import markdown, policy_document, python_module, read_policy, write_exports
from insight_cli.extract_policy.symbolic import Interface, PruningSearch, expand, extract, term_bound, variables_for
from insight_cli.train.eql import EqlActor, EqlConfig

OBJECTS, ACTIONS = ["ball", "paddle"], ["NOOP", "RIGHT", "LEFT"]
INTERFACE = Interface(variables_for(OBJECTS), ACTIONS)


def actor(seed=0, **kwargs) -> EqlActor:
    torch.manual_seed(seed)
    return EqlActor(EqlConfig(len(OBJECTS) * 8, len(ACTIONS), **kwargs))


def test_variables_are_named_in_the_order_of_the_flattened_coordinates():
    variables = variables_for(["ball", "Paddle 2", "ball", "3d"])
    assert [v.name for v in variables[:8]] == [f"{axis}_ball_{frame}" for frame in range(1, 5) for axis in "xy"]
    assert (
        variables[8].name == "x_paddle_2_1" and variables[16].name == "x_ball2_1" and variables[24].name == "x_obj3d_1"
    )
    assert variables[7].meaning == "vertical position of the ball in the current frame"


@pytest.mark.parametrize("n_layers", [1, 2])
def test_unpruned_expansion_equals_the_network(n_layers):
    eql = actor(n_layers=n_layers, n_funcs=1)
    if n_layers == 2:  # a dense degree-9 polynomial has millions of terms: keep a sparse network
        with torch.no_grad():
            for parameter in eql.parameters():
                parameter.mul_(torch.rand_like(parameter) < 0.25)
    policy = extract(eql, INTERFACE, threshold=0.0, digits=15)
    coordinates = torch.rand(32, 2, 4, 2)
    np.testing.assert_allclose(
        policy.logits(coordinates.numpy()), eql(coordinates).detach().double().numpy(), rtol=1e-6, atol=1e-5
    )
    # The sympy expressions are the same polynomials.
    symbols = policy.symbols
    point = dict(zip(symbols, coordinates[0].flatten().tolist()))
    for action, expression in enumerate(policy.expressions):
        assert float(expression.subs(point)) == pytest.approx(
            policy.logits(coordinates[:1].numpy())[0, action], rel=1e-6, abs=1e-5
        )


def test_pruning_recovers_move_toward_the_ball_from_noise():
    policy = extract(toward_the_ball(OBJECTS, noise=0.009), INTERFACE, threshold=0.01, digits=3)
    assert [str(expression) for expression in policy.expressions] == [
        "0",
        "10.0*x_ball_4 - 10.0*x_paddle_4",
        "-10.0*x_ball_4 + 10.0*x_paddle_4",
    ]
    assert policy.term_counts == [0, 2, 2]
    assert [v.name for v in policy.used_variables] == ["x_ball_4", "x_paddle_4"]


def test_rounding_keeps_significant_digits():
    eql = toward_the_ball(OBJECTS, noise=0.0)
    with torch.no_grad():
        eql.output.weight[1, 3 * eql.config.repeats] = 1.23456
    policy = extract(eql, INTERFACE, threshold=0.01, digits=2)
    assert sorted(policy.terms[1].values()) == [-10.0, 12.0]


def test_threshold_that_prunes_everything_is_an_error():
    with pytest.raises(InsightError, match="prunes every variable"):
        extract(toward_the_ball(OBJECTS, noise=0.009), INTERFACE, threshold=5.0, digits=3)


def test_a_term_budget_finds_the_least_pruning_that_fits():
    eql = toward_the_ball(OBJECTS, noise=0.3)
    assert max(extract(eql, INTERFACE, threshold=0.01, digits=3).term_counts) > 100
    policy = PruningSearch(eql, INTERFACE, digits=3, floor=0.01).fitting(2)
    assert policy.term_counts == [0, 2, 2] and 0.3 <= policy.threshold < 1.0
    # A little less pruning would break the limit: the search stopped at the least.
    looser = extract(eql, INTERFACE, threshold=policy.threshold * 0.85, digits=3)
    assert max(looser.term_counts) > 2
    # One term per action leaves no variable: RIGHT needs both the ball's x and the paddle's.
    assert PruningSearch(toward_the_ball(OBJECTS, noise=0.0), INTERFACE, digits=3, floor=0.001).fitting(1) is None


def test_the_budget_search_expands_nothing_beyond_its_limit_and_is_monotone(monkeypatch):
    torch.manual_seed(0)
    eql = EqlActor(EqlConfig(19 * 8, 6))  # Pong-sized: 19 objects, 152 inputs, barely trained
    interface = Interface(variables_for([f"o{i}" for i in range(19)]), list("abcdef"))
    bounds = []
    real = symbolic.expand

    def counted(actor, n_variables, threshold, limit=symbolic.MAX_EXPANDED_TERMS):
        bounds.append(term_bound(actor, n_variables, threshold))
        return real(actor, n_variables, threshold, limit)

    monkeypatch.setattr(symbolic, "expand", counted)
    search = PruningSearch(eql, interface, digits=3, floor=0.01, limit=2000)
    found = {budget: search.fitting(budget) for budget in (1, 2, 5, 10, 50, 200)}
    expanded = [bound for bound in bounds if bound <= 2000]
    assert max(bounds) > 2000 and len(expanded) < len(bounds)  # large ones were refused before expanding
    assert len(bounds) <= 2 * len(search.grid)  # each threshold at most once for all budgets (plus refusals)
    fitted = [(budget, policy) for budget, policy in found.items() if policy is not None]
    assert fitted and all(max(policy.term_counts) <= budget for budget, policy in fitted)
    thresholds = [policy.threshold for _, policy in fitted]
    assert thresholds == sorted(thresholds, reverse=True)  # a larger budget never prunes more


def test_the_numpy_and_the_polynomial_ring_expansions_agree(monkeypatch):
    eql = actor(seed=5)
    fast = expand(eql, 16, 0.05)
    monkeypatch.setattr(symbolic, "DENSE_ENTRIES", 0)  # too large for numpy: the ring expands it
    slow = expand(eql, 16, 0.05)
    for left, right in zip(fast, slow):
        assert left.keys() == right.keys() and all(left[m] == pytest.approx(right[m], abs=1e-12) for m in left)


def test_pruning_before_expansion_moves_no_coefficient_by_the_threshold():
    eql, plain, threshold = actor(seed=3, inverse_temperature=1.0), actor(seed=3, inverse_temperature=1.0), 0.02
    with torch.no_grad():
        for network in (eql, plain):
            network.layers[0].linear.weight.mul_(0.3)  # small weights, as in an actor over many inputs
        for parameter in plain.parameters():  # the same actor with only its small weights pruned, expanded exactly
            parameter.mul_(parameter.abs() >= threshold)
    exact, pruned = expand(plain, 16, 0.0), expand(eql, 16, threshold)
    assert sum(map(len, pruned)) < sum(map(len, exact))  # it did prune more
    for before, after in zip(exact, pruned):
        assert all(abs(coefficient - after.get(monomial, 0.0)) < threshold for monomial, coefficient in before.items())


def test_a_barely_trained_driving_actor_still_gives_short_equations():
    # 13 objects and 19 ego state values, default initialisation, means not sharpened: thousands
    # of tiny terms, which once made every threshold either too many to expand or no variable left
    torch.manual_seed(0)
    eql = EqlActor(EqlConfig(13 * 8 + 19, 2, inverse_temperature=1.0))
    variables = variables_for([f"o{i}" for i in range(13)], {f"ego_{i}": "" for i in range(19)})
    policy = PruningSearch(
        eql, Interface(variables, ["steering", "throttle"], continuous=True), digits=3, floor=0.01
    ).fitting(8)
    assert max(policy.term_counts) <= 8 and policy.used_variables


def test_hopeless_expansions_are_refused_before_they_start():
    eql = actor()
    with pytest.raises(InsightError, match="too many to expand"):
        extract(
            EqlActor(EqlConfig(19 * 8, 6)),
            Interface(variables_for([f"o{i}" for i in range(19)]), list("abcdef")),
            threshold=0.0,
            digits=3,
        )
    assert term_bound(eql, 16, 0.0) == 970  # every monomial of degree <= 3 in 16 variables, and a constant


def test_exports_round_trip_and_the_python_policy_matches(tmp_path):
    policy = extract(actor(), INTERFACE, threshold=0.05, digits=4)  # a couple of hundred terms per action
    report = {"run": "run.ckpt", "fidelity": {"held_out_fidelity": 0.9}, "returns": {"eql": 1.0, "symbolic": 1.0}}
    document = policy_document(policy, "Catch", {"RIGHT": "move right"}, OBJECTS, report)
    files = write_exports(tmp_path, policy, document)
    assert [f.name for f in files] == ["policy.json", "policy.md", "policy.tex", "policy.py"]
    loaded, saved = read_policy(tmp_path / "policy.json")
    assert loaded.terms == policy.terms and saved["actions"][1]["meaning"] == "move right"

    namespace: dict = {}
    exec(python_module(document, policy), namespace)  # the exported module needs numpy only
    coordinates = np.random.default_rng(0).random((50, 2, 4, 2))
    np.testing.assert_allclose(namespace["logits"](coordinates), policy.logits(coordinates), rtol=1e-9, atol=1e-9)
    assert namespace["act"](coordinates[0]) == policy.act(coordinates[:1])[0]
    assert "$$" in markdown(document) and "\\begin{align*}" in (tmp_path / "policy.tex").read_text()


def test_the_python_policy_compiles_however_long_the_equations():
    objects = ["a", "b", "c", "d"]
    torch.manual_seed(0)
    policy = extract(EqlActor(EqlConfig(32, 2)), Interface(variables_for(objects), ["L", "R"]), threshold=0.0, digits=6)
    assert min(policy.term_counts) > 3000  # one sum of this many terms is too deeply nested for Python's compiler
    namespace: dict = {}
    exec(python_module(policy_document(policy, "Catch", {}, objects, {"run": "run.ckpt"}), policy), namespace)
    coordinates = np.random.default_rng(0).random((4, 4, 4, 2))
    np.testing.assert_allclose(namespace["logits"](coordinates), policy.logits(coordinates), rtol=1e-9, atol=1e-9)


def test_read_policy_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "something"}')
    with pytest.raises(InsightError, match="not an insight policy"):
        read_policy(tmp_path / "x.json")
    with pytest.raises(InsightError, match="does not exist"):
        read_policy(tmp_path / "missing.json")


def test_gradients_match_autograd():
    eql = actor(n_funcs=1)
    policy = extract(eql, INTERFACE, threshold=0.0, digits=15)
    coordinates = torch.rand(8, 2, 4, 2, dtype=torch.float64, requires_grad=True)
    actions = np.arange(8) % 3
    log_probs = torch.log_softmax(eql.double()(coordinates), dim=-1)[torch.arange(8), torch.as_tensor(actions)]
    (expected,) = torch.autograd.grad(log_probs.sum(), coordinates)
    got = policy.sensitivities(coordinates.detach().numpy())[np.arange(8), actions]
    np.testing.assert_allclose(got, expected.reshape(8, -1).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(policy.probabilities(coordinates.detach().numpy()).sum(axis=1), 1.0)


def driving_policy(threshold=0.0):
    """An EQL actor over 2 objects and 2 ego state values with 2 continuous actions."""
    torch.manual_seed(0)
    eql = EqlActor(EqlConfig(len(OBJECTS) * 8 + 2, 2, n_funcs=1, inverse_temperature=1.0))
    interface = Interface(
        variables_for(OBJECTS, {"ego_speed": "speed", "ego_heading": "heading"}),
        ["steering", "throttle"],
        continuous=True,
    )
    return eql, extract(eql, interface, threshold=threshold, digits=15)


def test_continuous_policies_act_with_tanh_and_their_sensitivities_match_autograd():
    eql, policy = driving_policy()
    assert [v.name for v in policy.variables[-2:]] == ["ego_speed", "ego_heading"] and policy.variables[
        -1
    ].meaning == "heading"
    coordinates, state = torch.rand(8, 2, 4, 2, dtype=torch.float64), torch.rand(8, 2, dtype=torch.float64)
    inputs = torch.cat([coordinates.flatten(1), state], dim=1).requires_grad_(True)
    actions = torch.tanh(eql.double()(inputs))
    np.testing.assert_allclose(
        policy.act(coordinates.numpy(), state.numpy()), actions.detach().numpy(), rtol=1e-6, atol=1e-6
    )
    for a in range(2):
        (expected,) = torch.autograd.grad(actions[:, a].sum(), inputs, retain_graph=True)
        np.testing.assert_allclose(
            policy.sensitivities(inputs.detach().numpy())[:, a], expected.numpy(), rtol=1e-6, atol=1e-6
        )


def test_continuous_exports_round_trip_with_the_ego_state(tmp_path):
    _, policy = driving_policy(threshold=0.05)
    document = policy_document(
        policy, "MetaDrive", {"steering": "steer"}, OBJECTS, {"run": "run.ckpt", "fidelity": {}, "returns": {}}
    )
    write_exports(tmp_path, policy, document)
    loaded, saved = read_policy(tmp_path / "policy.json")
    assert loaded.continuous and loaded.terms == policy.terms and saved["state"] == ["ego_speed", "ego_heading"]
    assert [v.meaning for v in loaded.variables[-2:]] == ["speed", "heading"]
    namespace: dict = {}
    exec((tmp_path / "policy.py").read_text(), namespace)
    coordinates, state = np.random.default_rng(0).random((5, 2, 4, 2)), np.random.default_rng(1).random((5, 2))
    np.testing.assert_allclose(
        namespace["act"](coordinates, state), policy.act(coordinates, state), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        namespace["act"](coordinates[0], state[0]), policy.act(coordinates[:1], state[:1])[0], rtol=1e-9
    )
    assert (
        r"\mathrm{mean}_" in (tmp_path / "policy.tex").read_text()
        and "tanh(mean)" in (tmp_path / "policy.md").read_text()
    )
