from __future__ import annotations

import torch
import torch.nn as nn

from distrl.models.layers import ACTIVATIONS, orthogonal_init


class MLP(nn.Module):
    """Fully connected trunk for flat vector observations."""

    def __init__(self, input_dim: int, hidden_sizes: list[int], activation: str = "tanh"):
        super().__init__()
        layers: list[nn.Module] = []
        size = input_dim
        for hidden in hidden_sizes:
            layers += [orthogonal_init(nn.Linear(size, hidden)), ACTIVATIONS[activation]()]
            size = hidden
        self.net = nn.Sequential(*layers)
        self.output_dim = size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.dtype == torch.uint8:  # small pixel grids fed to an MLP
            return self.net(obs.float().flatten(1) / 255.0)
        return self.net(obs.float().flatten(1))
