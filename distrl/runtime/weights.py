"""Moving model weights between torch and the object store as plain numpy arrays."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in model.state_dict().items()}


def set_weights(model: nn.Module, weights: dict[str, np.ndarray]) -> None:
    # The object store hands out read-only views; copy so torch owns writable memory.
    model.load_state_dict({name: torch.from_numpy(np.array(array)) for name, array in weights.items()})
