from __future__ import annotations

from typing import Union

import numpy as np
import torch
import torch.nn as nn

from distrl.models.cnn import NatureCNN
from distrl.models.layers import orthogonal_init
from distrl.models.mlp import MLP
from distrl.models.multi_input import MultiInput

# The networks a policy or Q-head sits on; both say how many features they give (output_dim).
Trunk = Union[MLP, NatureCNN, MultiInput]


def epsilon_greedy(q_values: torch.Tensor, epsilon: torch.Tensor | float) -> torch.Tensor:
    """argmax Q with probability 1 - epsilon, else a uniformly random action; ``epsilon`` may
    differ per row (one per env copy). Ties go to a random one of the best actions, which
    matters for a zero-initialised table."""
    n, num_actions = q_values.shape
    noise = torch.rand_like(q_values) * 1e-6
    greedy = (q_values + noise).argmax(-1)
    random = torch.randint(0, num_actions, (n,), device=q_values.device)
    explore = torch.rand(n, device=q_values.device) < torch.as_tensor(epsilon, device=q_values.device)
    return torch.where(explore, random, greedy)


def greedy_actions(q_values: torch.Tensor) -> torch.Tensor:
    """argmax Q, the first of tied actions: what ``act(greedy=True)`` and an exported policy
    (``distrl/export.py``) both take, so the two cannot drift apart."""
    return q_values.argmax(-1)


class QNetwork(nn.Module):
    """Action values on an MLP or CNN trunk; with ``dueling`` the head is split into a state
    value and advantages, Q = V + A - mean(A) (Wang et al. 2016, eq. 9)."""

    def __init__(self, trunk: Trunk, num_actions: int, dueling: bool = True):
        super().__init__()
        self.trunk = trunk
        self.dueling = dueling
        self.advantage_head = orthogonal_init(nn.Linear(trunk.output_dim, num_actions), gain=1.0)
        self.value_head = orthogonal_init(nn.Linear(trunk.output_dim, 1), gain=1.0) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.trunk(obs)
        if torch.is_autocast_enabled(features.device.type):
            # Under the learner's bf16 autocast the trunk runs in bf16; Q-values stay fp32,
            # since TD errors are small differences of them.
            with torch.autocast(features.device.type, enabled=False):
                return self._head(features.float())
        return self._head(features)

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        advantages = self.advantage_head(features)
        if not self.dueling:
            return advantages
        assert self.value_head is not None  # built whenever dueling is on
        return self.value_head(features) + advantages - advantages.mean(-1, keepdim=True)

    # ``self`` is any Q-valued module: QTable shares these two methods.
    @torch.no_grad()
    def act(
        self: nn.Module, obs: torch.Tensor, epsilon: np.ndarray | float = 0.0, greedy: bool = False
    ) -> dict[str, torch.Tensor]:
        """Epsilon-greedy actions, with Q(s, a) of the taken action and max_a Q(s, a), which
        the worker uses for the transitions' initial priorities."""
        q = self(obs)
        action = greedy_actions(q) if greedy else epsilon_greedy(q, torch.as_tensor(epsilon, dtype=torch.float32))
        return {
            "actions": action,
            "q_taken": q.gather(-1, action.unsqueeze(-1)).squeeze(-1),
            "values": q.max(-1).values,
        }

    @torch.no_grad()
    def value(self: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        return self(obs).max(-1).values


class QTable(nn.Module):
    """A table of action values for one-hot observations: Q(s, .) = onehot(s) @ table."""

    def __init__(self, num_states: int, num_actions: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_states, num_actions))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float() @ self.table

    act = QNetwork.act
    value = QNetwork.value
