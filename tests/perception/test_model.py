import pytest
import torch

from insight_cli.perception import ENCODERS
from insight_cli.perception.model import PerceptionConfig, PerceptionNet


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
