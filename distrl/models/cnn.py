from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def seen_extent(size: int, layers: list[tuple[int, int, int]]) -> int:
    """How many leading pixels of a ``size``-pixel side reach the last conv layer's output.

    Unpadded strided convolutions drop the tail a stride does not fit: on a 42-pixel side the
    Nature and the 2013 networks see pixels 0-35 only (issue 31: Pong's paddle sits at 36-37).
    Walking back from the last layer, ``m`` outputs of a (kernel k, stride s) layer read
    ``(m - 1) * s + k`` inputs; whatever lies beyond is never read."""
    outputs = [size]
    for _, kernel, stride in layers:
        outputs.append((outputs[-1] - kernel) // stride + 1)
    if outputs[-1] < 1:
        return 0
    extent = outputs[-1]
    for _, kernel, stride in reversed(layers):
        extent = (extent - 1) * stride + kernel
    return extent


def covered_size(size: int, layers: list[tuple[int, int, int]]) -> int:
    """The smallest side length >= ``size`` whose every pixel reaches the output."""
    padded = size
    while seen_extent(padded, layers) != padded:
        padded += 1
    return padded


class NatureCNN(nn.Module):
    """A conv trunk for uint8 frame stacks ``[C, H, W]`` or single gray frames ``[H, W]``
    (84x84 by default): the Nature network, or the smaller 2013 one (``model.cnn: small``).
    Frames stay uint8 until here.

    Every input pixel reaches the output: a frame side that the strided convolutions would
    cut short (42 loses its last 6 pixels) is zero-padded on the right or bottom to the next
    side they cover whole (44), so no config can hide part of the screen from the network."""

    MIN_SIZE = 36  # the smallest frame the Nature network's three conv layers accept

    def __init__(self, obs_shape: tuple[int, ...], architecture: str = "nature"):
        super().__init__()
        layers, hidden = ARCHITECTURES[architecture]
        self.gray = len(obs_shape) == 2  # [H, W] frames: one channel
        shape = (1, *obs_shape) if self.gray else tuple(obs_shape)
        height, width = shape[1], shape[2]
        self.padded = (covered_size(height, layers), covered_size(width, layers))
        # F.pad's order: (left, right, top, bottom) of the last two axes.
        self.padding = (0, self.padded[1] - width, 0, self.padded[0] - height)
        convs: list[nn.Module] = []
        channels = shape[0]
        for out_channels, kernel, stride in layers:
            convs += [orthogonal_init(nn.Conv2d(channels, out_channels, kernel, stride=stride)), nn.ReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, shape[0], *self.padded)).shape[1]
        self.fc = nn.Sequential(orthogonal_init(nn.Linear(flat, hidden)), nn.ReLU())
        self.output_dim = hidden
        self.channels_last = False  # set by use_channels_last(): the learner's option

    def use_channels_last(self) -> None:
        """NHWC weights and inputs: oneDNN's CPU convolutions run faster on them (1.6x for a
        PPO update of the 2013 network on 44x44 frames here, scripts/learner_levers.py)."""
        for conv in self.convs:
            if isinstance(conv, nn.Conv2d):
                conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
        self.channels_last = True

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0
        if self.gray:
            x = x.unsqueeze(-3)
        if any(self.padding):
            x = F.pad(x, self.padding)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fc(self.convs(x))
