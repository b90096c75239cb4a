import pytest
import torch

from insight_cli.perception import ENCODERS
from insight_cli.perception.model import NEGLIGIBLE_WEIGHT, PerceptionConfig, PerceptionNet, zero_negligible_weights


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_gives_the_same_outputs_from_a_stack(encoder):
    net = PerceptionNet(PerceptionConfig(n_objects=3, hidden=16, encoder=encoder))
    out = net(torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8))
    assert out.features.shape == (2, 16) and out.existence_logits.shape == (2, 3, 4)
    assert out.coordinates.shape == (2, 3, 4, 2) and out.shape.shape == (2, 3, 2)


def test_the_nature_encoder_is_much_smaller_than_the_papers():
    def weights(encoder):
        return sum(p.numel() for p in PerceptionNet(PerceptionConfig(2, 256, encoder=encoder)).encoder.parameters())

    assert weights("nature") * 5 < weights("insight")


def test_an_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="unknown encoder"):
        PerceptionNet(PerceptionConfig(2, 16, encoder="resnet"))


def test_the_background_is_the_median_frame_and_is_taken_off_every_frame():
    net = PerceptionNet(PerceptionConfig(2, 16))
    frames = torch.full((5, 84, 84), 80, dtype=torch.uint8)
    frames[0, 10, 10] = 255  # an object in one frame is not background
    net.encoder.set_background(frames)
    assert torch.allclose(net.encoder.background, torch.full((84, 84), 80 / 255))
    blank = net.encoder(torch.full((1, 4, 84, 84), 80, dtype=torch.uint8))
    zero = PerceptionNet(PerceptionConfig(2, 16)).encoder
    zero.load_state_dict({k: v for k, v in net.encoder.state_dict().items() if k != "background"})
    assert torch.allclose(blank, zero(torch.zeros((1, 4, 84, 84), dtype=torch.uint8)), atol=1e-6)


def test_a_state_dict_from_before_the_background_loads_without_subtraction():
    net = PerceptionNet(PerceptionConfig(2, 16))
    net.encoder.background.fill_(0.5)
    old = {k: v for k, v in PerceptionNet(PerceptionConfig(2, 16)).state_dict().items() if k != "encoder.background"}
    net.load_state_dict(old)
    assert not net.encoder.background.any()


def test_weights_too_small_to_change_an_output_are_zeroed_on_loading():
    torch.manual_seed(0)
    config = PerceptionConfig(n_objects=2, hidden=32, encoder="nature")
    state = {name: tensor.clone() for name, tensor in PerceptionNet(config).state_dict().items()}
    weight = state["encoder.project.0.weight"]
    weight[:8] = torch.logspace(-40, -25, weight.shape[1])  # units whose weights decayed: denormal and just above
    tiny = (weight != 0) & (weight.abs() < NEGLIGIBLE_WEIGHT)
    exact, cleaned = PerceptionNet(config), PerceptionNet(config)
    cleaned.load_state_dict(state)
    exact.load_state_dict(state)
    with torch.no_grad():
        exact.encoder.project[0].weight.copy_(weight)  # the weights as stored, tiny ones included
    loaded = cleaned.encoder.project[0].weight
    assert tiny.sum() > 8 * 100 and (loaded[tiny] == 0).all() and torch.equal(loaded[~tiny], weight[~tiny])
    frames = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(exact(frames).coordinates, cleaned(frames).coordinates)


def test_zeroing_keeps_every_weight_of_a_usual_size():
    torch.manual_seed(0)
    net = PerceptionNet(PerceptionConfig(n_objects=2, hidden=32, encoder="nature"))
    before = {name: tensor.clone() for name, tensor in net.state_dict().items()}
    zero_negligible_weights(net)
    assert all(torch.equal(before[name], tensor) for name, tensor in net.state_dict().items())
