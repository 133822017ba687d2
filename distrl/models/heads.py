"""Action heads: the policy's output layer and the math of its distribution, one class per
kind of action space.

A head maps trunk features ``[..., F]`` to the distribution's parameters ``[..., P]`` and
knows how to sample, score and measure them. The algorithms never look inside: they call
``log_prob(params, actions)`` and ``entropy(params)``, which take any leading axes (a flat
minibatch ``[N]`` or a time-major batch ``[T, B]``). A joint action of several independent
parts (``MultiDiscrete``, ``MultiBinary``, a ``Box``'s dimensions) scores the sum of its parts'
log-probabilities, so an importance ratio is the product of the per-dimension ratios, which
is what V-trace and PPO's clipped ratio then use.

| action space | head | fragment ``actions`` |
|---|---|---|
| ``Discrete(n)`` | categorical, ``n`` logits | ``[T, K]`` int64 |
| ``MultiDiscrete(nvec)`` | one categorical per entry, ``sum(nvec)`` logits | ``[T, K, D]`` int64 |
| ``MultiBinary(d)`` | one Bernoulli per entry, ``d`` logits | ``[T, K, d]`` int64 (0/1) |
| ``Box`` (1-D) | diagonal Gaussian: ``d`` means, log std per state or one per dimension | ``[T, K, d]`` float32 |

For a ``Box`` the fragment keeps the Gaussian's own sample ``u``; what the env receives is
``u`` clipped to the bounds (``action_bounds: clip``, CleanRL's choice) or squashed into
them, ``low + (tanh(u) + 1) / 2 * (high - low)`` (``squash``). Either map is a fixed part of
the environment as the policy sees it, so the policy gradient on ``u`` needs no Jacobian term,
and the ratio of two policies is the same before and after the map.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from distrl.errors import ConfigError
from distrl.models.layers import orthogonal_init

# Algorithms that take every action space here (the message for those that take Discrete only).
CONTINUOUS_ALGOS = "ppo, a2c, a3c, impala, appo and pg"


class ActionHead(nn.Module, abc.ABC):
    """The interface (module docstring); subclasses fill in the distribution."""

    @abc.abstractmethod
    def forward(self, features: torch.Tensor) -> torch.Tensor: ...  # -> params [..., P]

    @abc.abstractmethod
    def greedy_actions(self, params: torch.Tensor) -> torch.Tensor:
        """The most likely action (a Gaussian's mean). One method that both ``sample(greedy=True)``
        and an exported policy (``distrl/export.py``) call, so the two cannot drift apart."""

    def sample(self, params: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        return self.greedy_actions(params) if greedy else self.random_actions(params)

    @abc.abstractmethod
    def random_actions(self, params: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def entropy(self, params: torch.Tensor) -> torch.Tensor: ...

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """What the envs receive for the recorded ``actions [K, ...]``."""
        return actions

    def to_env_tensor(self, actions: torch.Tensor) -> torch.Tensor:
        """``to_env`` in torch, for an exported policy (a traced graph cannot call numpy)."""
        return actions


def _gumbel_argmax(logits: torch.Tensor) -> torch.Tensor:
    # Gumbel-max trick: argmax(logits + Gumbel noise) is a sample of softmax(logits). It is
    # several times cheaper than torch.multinomial or Categorical.sample, which on small
    # models cost more than the network itself.
    gumbel = -torch.empty_like(logits).exponential_().log()
    return (logits + gumbel).argmax(-1)


def _categorical_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    return -(log_probs.exp() * log_probs).sum(-1)


class Categorical(nn.Linear, ActionHead):
    """Softmax over ``n`` logits. A plain linear layer underneath, so its weights keep the
    names that checkpoints written before the other heads existed carry."""

    def __init__(self, features: int, n: int):
        super().__init__(features, n)
        orthogonal_init(self, gain=0.01)

    def greedy_actions(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1)

    def random_actions(self, params: torch.Tensor) -> torch.Tensor:
        return _gumbel_argmax(params)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return params.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        return _categorical_entropy(params.log_softmax(-1))


class MultiCategorical(ActionHead):
    """Independent categoricals, one per ``MultiDiscrete`` entry, their logits side by side."""

    def __init__(self, features: int, nvec: list[int]):
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.linear = orthogonal_init(nn.Linear(features, sum(self.nvec)), gain=0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def _parts(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return params.split(self.nvec, dim=-1)

    def greedy_actions(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.argmax(-1) for p in self._parts(params)], dim=-1)

    def random_actions(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([_gumbel_argmax(p) for p in self._parts(params)], dim=-1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(params.shape[:-1], dtype=params.dtype, device=params.device)
        for d, part in enumerate(self._parts(params)):
            total = total + part.log_softmax(-1).gather(-1, actions[..., d : d + 1]).squeeze(-1)
        return total

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        return sum(_categorical_entropy(p.log_softmax(-1)) for p in self._parts(params))  # type: ignore[return-value]


class Bernoulli(ActionHead):
    """Independent Bernoullis, one per ``MultiBinary`` entry (a console's buttons)."""

    def __init__(self, features: int, n: int):
        super().__init__()
        self.linear = orthogonal_init(nn.Linear(features, n), gain=0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def greedy_actions(self, params: torch.Tensor) -> torch.Tensor:
        return (params > 0).long()

    def random_actions(self, params: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(params) < torch.sigmoid(params)).long()

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        # log p(a) = a log s(x) + (1 - a) log s(-x), i.e. minus the binary cross-entropy.
        return -F.binary_cross_entropy_with_logits(params, actions.to(params.dtype), reduction="none").sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(params)
        return (F.softplus(params) - p * params).sum(-1)  # H = log(1 + e^x) - p x


class DiagGaussian(ActionHead):
    """Diagonal Gaussian over a 1-D ``Box``: means from the features; log standard deviations
    from the features too (``log_std: state``) or one learned value per dimension
    (``parameter``, the PPO paper's choice), clamped to [-5, 2]."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, features: int, space: gym.spaces.Box, log_std: str, log_std_init: float, bounds: str):
        super().__init__()
        self.dim = int(np.prod(space.shape))
        self.state_dependent = log_std == "state"
        self.bounds = bounds
        self.mean = orthogonal_init(nn.Linear(features, self.dim), gain=0.01)
        if self.state_dependent:
            self.log_std = orthogonal_init(nn.Linear(features, self.dim), gain=0.01)
            nn.init.constant_(self.log_std.bias, log_std_init)
        else:
            self.log_std_param = nn.Parameter(torch.full((self.dim,), float(log_std_init)))
        self.low = np.asarray(space.low, dtype=np.float32).reshape(-1)
        self.high = np.asarray(space.high, dtype=np.float32).reshape(-1)
        self.shape = space.shape

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.mean(features)
        if self.state_dependent:
            log_std = self.log_std(features)
        else:
            log_std = self.log_std_param.expand_as(mean)
        return torch.cat([mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)], dim=-1)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = params.split(self.dim, dim=-1)
        return mean, log_std

    def greedy_actions(self, params: torch.Tensor) -> torch.Tensor:
        return self._split(params)[0]

    def random_actions(self, params: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        return mean + log_std.exp() * torch.randn_like(mean)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        if self.bounds == "squash":
            scaled = self.low + (np.tanh(actions) + 1) / 2 * (self.high - self.low)
        else:
            scaled = np.clip(actions, self.low, self.high)
        return scaled.astype(np.float32).reshape(actions.shape[:-1] + tuple(self.shape))

    def to_env_tensor(self, actions: torch.Tensor) -> torch.Tensor:
        # The same arithmetic as to_env, in the same order, so float32 results agree to rounding.
        low = torch.as_tensor(self.low, device=actions.device)
        high = torch.as_tensor(self.high, device=actions.device)
        if self.bounds == "squash":
            scaled = low + (torch.tanh(actions) + 1) / 2 * (high - low)
        else:
            scaled = torch.clamp(actions, low, high)
        return scaled.to(torch.float32).reshape(actions.shape[:-1] + tuple(self.shape))


def build_head(model_config: Any, features: int, space: gym.Space) -> ActionHead:
    """The head for ``space``, or one paragraph saying which spaces distrl's policies take."""
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(features, int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        return MultiCategorical(features, list(space.nvec))
    if isinstance(space, gym.spaces.MultiBinary) and len(np.shape(space.n)) <= 1:
        return Bernoulli(features, int(np.prod(space.n)))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        bounded = bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
        if model_config.action_bounds == "squash" and not bounded:
            raise ConfigError(
                f"model.action_bounds=squash maps actions into the action space's bounds, and {space} has "
                f"infinite ones. Use model.action_bounds=clip."
            )
        return DiagGaussian(
            features, space, model_config.log_std, model_config.log_std_init, model_config.action_bounds
        )
    raise ConfigError(
        f"distrl's policies take Discrete, MultiDiscrete, MultiBinary and 1-D float Box action spaces, and this "
        f"environment's action space is {space}. Map it onto one of them with an action wrapper in your env, or "
        f"choose a discretizing option of its family (see `distrl envs`)."
    )


__all__ = [
    "ActionHead",
    "Bernoulli",
    "CONTINUOUS_ALGOS",
    "Categorical",
    "DiagGaussian",
    "MultiCategorical",
    "build_head",
]
