"""Helpers several test modules share."""

import torch

from insight_cli.extract_policy.symbolic import variables_for
from insight_cli.train.eql import EqlActor, EqlConfig


def toward_the_ball(object_names: list[str], noise: float) -> EqlActor:
    """Identity units on x_ball_4 and x_paddle_4; RIGHT = 10 (xb - xp), LEFT = 10 (xp - xb);
    every other weight is noise smaller than `noise`."""
    torch.manual_seed(0)
    eql = EqlActor(EqlConfig(len(object_names) * 8, 3))
    variables = [v.name for v in variables_for(object_names)]
    with torch.no_grad():
        for parameter in eql.parameters():
            parameter.uniform_(-noise, noise)
        layer, identity = eql.layers[0], 3 * eql.config.repeats  # first identity unit
        layer.linear.weight[identity, variables.index("x_ball_4")] = 1.0
        layer.linear.weight[identity + 1, variables.index("x_paddle_4")] = 1.0
        eql.output.weight[1, identity], eql.output.weight[1, identity + 1] = 1.0, -1.0
        eql.output.weight[2, identity], eql.output.weight[2, identity + 1] = -1.0, 1.0
    return eql
