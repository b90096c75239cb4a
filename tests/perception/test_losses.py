import torch
import torch.nn.functional as F

from insight_cli.perception.losses import (
    PerceptionTargets,
    focal_loss,
    masked_l1,
    object_weights,
    perception_loss,
)
from insight_cli.perception.model import PerceptionConfig, PerceptionNet, PerceptionOutput


def test_masked_l1_ignores_absent_objects():
    prediction = torch.tensor([[[0.5, 0.5], [0.9, 0.9]]])  # (B=1, K=2, D=2)
    target = torch.tensor([[[0.4, 0.7], [0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    loss = masked_l1(prediction, target, mask, torch.ones(2))
    assert torch.isclose(loss, torch.tensor(0.3))  # |0.1| + |0.2| for the one present object


def test_masked_l1_weights_objects():
    prediction, target = torch.ones(1, 2, 2), torch.zeros(1, 2, 2)
    mask = torch.ones(1, 2, dtype=torch.bool)
    equal = masked_l1(prediction, target, mask, torch.tensor([1.0, 1.0]))
    skewed = masked_l1(prediction, target, mask, torch.tensor([3.0, 1.0]))
    assert torch.isclose(skewed, 2 * equal)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(4, 3, 4), torch.rand(4, 3, 4) > 0.5
    expected = F.binary_cross_entropy_with_logits(logits, target.float())
    assert torch.isclose(focal_loss(logits, target, torch.ones(3), gamma=0.0), expected)


def test_focal_loss_discounts_easy_examples():
    easy = torch.full((1, 1, 4), 4.0)  # confident and right
    hard = torch.full((1, 1, 4), -0.5)  # unsure and wrong
    target = torch.ones(1, 1, 4, dtype=torch.bool)
    weights = torch.ones(1)
    ratio_focal = focal_loss(hard, target, weights) / focal_loss(easy, target, weights)
    ratio_bce = focal_loss(hard, target, weights, gamma=0.0) / focal_loss(easy, target, weights, gamma=0.0)
    assert ratio_focal > 100 * ratio_bce


def test_rare_objects_weigh_more():
    weights = object_weights(torch.tensor([0.99, 0.5, 0.01]))
    assert weights[2] > weights[1] > weights[0]
    assert (weights > 0.1).all() and (weights < 1.1).all()


def test_perception_loss_is_zero_only_for_perfect_predictions():
    exists = torch.tensor([[[True, True, False, True]]])
    coordinates = torch.rand(1, 1, 4, 2) * exists.unsqueeze(-1)
    shape = torch.rand(1, 1, 2)
    targets = PerceptionTargets(exists, coordinates, shape)
    perfect = PerceptionOutput(torch.zeros(1, 8), torch.where(exists, 20.0, -20.0), coordinates, shape)
    losses = perception_loss(perfect, targets, torch.ones(1))
    assert losses.total < 1e-6
    off = PerceptionOutput(perfect.features, perfect.existence_logits, coordinates + 0.1, shape)
    assert torch.isclose(perception_loss(off, targets, torch.ones(1)).coordinates, torch.tensor(0.2))


def test_network_shapes_and_inference_masking():
    net = PerceptionNet(PerceptionConfig(n_objects=3, hidden=64))
    frames = torch.randint(0, 255, (2, 4, 84, 84), dtype=torch.uint8)
    output = net(frames)
    assert output.features.shape == (2, 64)
    assert output.existence_logits.shape == (2, 3, 4)
    assert output.coordinates.shape == (2, 3, 4, 2) and output.shape.shape == (2, 3, 2)
    forced = output._replace(
        existence_logits=torch.tensor([-5.0, 5.0, 5.0]).view(1, 3, 1).expand(2, 3, 4),
        coordinates=torch.full((2, 3, 4, 2), 1.7),
    )
    coordinates = net.object_coordinates(forced)
    assert (coordinates[:, 0] == 0).all() and (coordinates[:, 1:] == 1.0).all()
    # uint8 frames are scaled to [0, 1] inside the encoder
    assert torch.allclose(net.encoder(frames), net.encoder(frames.float() / 255))
