"""The recurrent core of a policy with memory (``model.recurrent: lstm | gru``).

The state of every env copy lives in one tensor ``[B, S, H]``: ``S = 2`` rows (h, c) for an
LSTM, 1 for a GRU, so that workers, fragments and the learner move it without knowing which
cell made it. A step whose observation starts an episode sees a zero state: the state is
multiplied by ``1 - episode_start`` before the cell runs. Workers and the learner apply the
same rule, so the learner, unrolling a fragment from the state the worker recorded at its first
step, reproduces the worker's states exactly (and backpropagates through the whole fragment).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class RecurrentCore(nn.Module):
    def __init__(self, kind: str, input_dim: int, hidden: int):
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"unknown recurrent core {kind!r}: expected 'lstm' or 'gru'")
        self.kind = kind
        self.cell: nn.LSTMCell | nn.GRUCell = (
            nn.LSTMCell(input_dim, hidden) if kind == "lstm" else nn.GRUCell(input_dim, hidden)
        )
        self.output_dim = hidden
        self.state_rows = 2 if kind == "lstm" else 1

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.state_rows, self.output_dim)

    def step(
        self, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for a batch: ``x [B, F]``, ``state [B, S, H]``, ``episode_start [B]`` ->
        ``(output [B, H], new state [B, S, H])``."""
        state = state * (~episode_start).to(state.dtype).view(-1, 1, 1)
        if self.kind == "lstm":
            h, c = self.cell(x, (state[:, 0], state[:, 1]))
            return h, torch.stack([h, c], dim=1)
        h = self.cell(x, state[:, 0])
        return h, h.unsqueeze(1)

    def unroll(
        self, x: torch.Tensor, state: torch.Tensor, episode_start: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A time-major sequence: ``x [T, B, F]``, ``episode_start [T, B]`` -> ``(outputs
        [T, B, H], final state)``. A Python loop over time: the cell's cuDNN sequence kernels
        cannot zero the state in the middle of a sequence, and fragments are short."""
        outputs = []
        for t in range(x.shape[0]):
            out, state = self.step(x[t], state, episode_start[t])
            outputs.append(out)
        return torch.stack(outputs), state


__all__ = ["RecurrentCore"]
