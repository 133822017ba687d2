from __future__ import annotations

import torch
import torch.nn as nn

from distrl.models.layers import orthogonal_init


class NatureCNN(nn.Module):
    """The DQN Nature paper's network (Mnih et al. 2015): three conv layers and a 512-unit
    layer, for uint8 frame stacks ``[C, 84, 84]``. Frames stay uint8 until here."""

    MIN_SIZE = 36  # the smallest frame its three conv layers accept

    def __init__(self, obs_shape: tuple[int, ...], hidden: int = 512):
        super().__init__()
        channels = obs_shape[0]
        self.convs = nn.Sequential(
            orthogonal_init(nn.Conv2d(channels, 32, 8, stride=4)),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *obs_shape)).shape[1]
        self.fc = nn.Sequential(orthogonal_init(nn.Linear(flat, hidden)), nn.ReLU())
        self.output_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() / 255.0))
