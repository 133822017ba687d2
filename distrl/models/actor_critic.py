from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.errors import ConfigError
from distrl.models.cnn import NatureCNN
from distrl.models.layers import orthogonal_init
from distrl.models.mlp import MLP


class ActorCritic(nn.Module):
    """A categorical policy head and a value head, on one shared trunk or on two."""

    def __init__(self, policy_trunk: nn.Module, value_trunk: nn.Module | None, num_actions: int):
        super().__init__()
        self.policy_trunk = policy_trunk
        self.value_trunk = value_trunk  # None: the value head shares the policy trunk
        self.policy_head = orthogonal_init(nn.Linear(policy_trunk.output_dim, num_actions), gain=0.01)
        value_dim = (value_trunk or policy_trunk).output_dim
        self.value_head = orthogonal_init(nn.Linear(value_dim, 1), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(logits [N, A], value [N])``."""
        features = self.policy_trunk(obs)
        value_features = features if self.value_trunk is None else self.value_trunk(obs)
        return self.policy_head(features), self.value_head(value_features).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, greedy: bool = False) -> dict[str, torch.Tensor]:
        """Sample one action per row; returns what a fragment records about the behaviour
        policy: the action, its log-probability and the value estimate."""
        logits, value = self(obs)
        log_probs = logits.log_softmax(-1)
        if greedy:
            action = logits.argmax(-1)
        else:
            # Gumbel-max trick: argmax(logits + Gumbel noise) is a sample of softmax(logits).
            # It is several times cheaper than torch.multinomial or Categorical.sample, which
            # on small models cost more than the network itself.
            gumbel = -torch.empty_like(logits).exponential_().log()
            action = (logits + gumbel).argmax(-1)
        logp = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return {"actions": action, "logp": logp, "values": value}

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)[1]


def build_model(model_config, obs_space: gym.Space, action_space: gym.Space) -> ActorCritic:
    """The network for these spaces: Nature CNN for image stacks ``[C, H, W]``, MLP for vectors."""
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"distrl's policies take discrete actions, and this environment's action space is "
            f"{action_space}. Choose an environment with a Discrete action space, or a "
            f"discretizing option of its family (see `distrl envs`)."
        )
    shape = tuple(obs_space.shape or ())
    kind = model_config.kind
    if kind == "auto":
        kind = "cnn" if len(shape) == 3 else "mlp"
    if kind == "cnn":
        if len(shape) != 3:
            raise ConfigError(
                f"model.kind=cnn needs image observations [C, H, W], and this environment's "
                f"observations have shape {shape}. Use model.kind=mlp (or auto)."
            )
        return ActorCritic(NatureCNN(shape), None, int(action_space.n))
    if kind == "mlp":
        input_dim = int(np.prod(shape)) if shape else 1
        policy_trunk = MLP(input_dim, list(model_config.hidden_sizes), model_config.activation)
        value_trunk = None
        if not model_config.shared_trunk:
            value_trunk = MLP(input_dim, list(model_config.hidden_sizes), model_config.activation)
        return ActorCritic(policy_trunk, value_trunk, int(action_space.n))
    raise ConfigError(f"model.kind must be one of auto, mlp, cnn; got {kind!r}.")
