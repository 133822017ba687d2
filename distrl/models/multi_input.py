from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.envs.packed import PackedSpace, Part
from distrl.models.cnn import NatureCNN
from distrl.models.layers import ACTIVATIONS, orthogonal_init


def unpack(rows: torch.Tensor, part: Part) -> torch.Tensor:
    """``part`` of a batch of packed rows ``[N, bytes]``, shaped ``[N, *part.shape]``: pixels
    stay uint8, float32 parts are their bytes viewed as floats. The float bytes are copied
    first: a part may start at any byte, and a view as float32 needs a 4-byte aligned start,
    which a one-row slice (evaluation, one env copy) would not be copied into otherwise."""
    chunk = rows[:, part.start : part.start + part.nbytes]
    if part.dtype == np.float32:
        chunk = chunk.clone().view(torch.float32)
    return chunk.reshape(rows.shape[0], *part.shape)


class MultiInput(nn.Module):
    """One encoder per part of a Dict or Tuple observation (the Nature CNN for images, an MLP
    for vectors, as ``build_trunk`` would choose for that part alone), their features
    concatenated and mixed by one dense layer as wide as the widest encoder. The mixing layer
    is what lets the heads act on the parts jointly: a linear head on the bare concatenation
    scores each part separately and adds the scores, which cannot express "the lamp's side,
    flipped by the switch" (``examples/mygames``'s LampAndSwitch stalls at 75% without it).
    The observation arrives packed (``envs/packed.py``) and is unpacked here."""

    def __init__(self, space: PackedSpace, encoder_for: Callable[[gym.spaces.Box], nn.Module], activation: str):
        super().__init__()
        self.parts = space.parts
        self.encoders = nn.ModuleList(
            encoder_for(gym.spaces.Box(0, 255 if part.dtype == np.uint8 else np.inf, part.shape, part.dtype))
            for part in self.parts
        )
        widths = [int(encoder.output_dim) for encoder in self.encoders]  # type: ignore[arg-type]
        self.has_images = any(isinstance(encoder, NatureCNN) for encoder in self.encoders)
        # ReLU after convolutions, as the CNN's own dense layer; the model's activation otherwise.
        mix_activation = nn.ReLU() if self.has_images else ACTIVATIONS[activation]()
        self.mix = nn.Sequential(orthogonal_init(nn.Linear(sum(widths), max(widths))), mix_activation)
        self.output_dim = max(widths)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        rows = obs.flatten(1)
        features = [encoder(unpack(rows, part)) for part, encoder in zip(self.parts, self.encoders)]
        return self.mix(torch.cat(features, dim=-1))
