import math
from typing import TypeVar

import torch.nn as nn

Layer = TypeVar("Layer", nn.Linear, nn.Conv2d)


def orthogonal_init(layer: Layer, gain: float = math.sqrt(2), bias: float = 0.0) -> Layer:
    """Orthogonal weights and constant bias, the initialisation the PPO paper's code uses."""
    nn.init.orthogonal_(layer.weight, gain)
    assert layer.bias is not None, "orthogonal_init needs a layer with a bias"
    nn.init.constant_(layer.bias, bias)
    return layer


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
