from __future__ import annotations

import torch
import torch.nn as nn

from distrl.models.layers import orthogonal_init

# (out channels, kernel, stride) of each conv layer, and the width of the dense layer after them.
ARCHITECTURES: dict[str, tuple[list[tuple[int, int, int]], int]] = {
    # The DQN Nature paper's network (Mnih et al. 2015).
    "nature": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),
    # The DQN NIPS paper's network (Mnih et al. 2013), which A3C also used for Atari (Mnih et
    # al. 2016): about a third of the Nature network's multiply-adds on 84x84 frames (3.0M
    # against 9.4M per frame stack), so a CPU learner takes three times the data.
    "small": ([(16, 8, 4), (32, 4, 2)], 256),
}


class NatureCNN(nn.Module):
    """A conv trunk for uint8 frame stacks ``[C, H, W]`` (84x84 by default): the Nature
    network, or the smaller 2013 one (``model.cnn: small``). Frames stay uint8 until here."""

    MIN_SIZE = 36  # the smallest frame the Nature network's three conv layers accept

    def __init__(self, obs_shape: tuple[int, ...], architecture: str = "nature"):
        super().__init__()
        layers, hidden = ARCHITECTURES[architecture]
        convs: list[nn.Module] = []
        channels = obs_shape[0]
        for out_channels, kernel, stride in layers:
            convs += [orthogonal_init(nn.Conv2d(channels, out_channels, kernel, stride=stride)), nn.ReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *obs_shape)).shape[1]
        self.fc = nn.Sequential(orthogonal_init(nn.Linear(flat, hidden)), nn.ReLU())
        self.output_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() / 255.0))
