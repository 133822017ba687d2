from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.errors import ConfigError
from distrl.models.cnn import NatureCNN
from distrl.models.layers import orthogonal_init
from distrl.models.mlp import MLP
from distrl.models.q_network import QNetwork, QTable, Trunk


class ActorCritic(nn.Module):
    """A categorical policy head and a value head, on one shared trunk or on two."""

    def __init__(self, policy_trunk: Trunk, value_trunk: Trunk | None, num_actions: int):
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


def build_trunk(model_config, obs_space: gym.Space) -> Trunk:
    """Nature CNN for image stacks ``[C, H, W]``, MLP for vectors (``model.kind: auto``)."""
    shape = tuple(obs_space.shape or ())
    is_image = len(shape) == 3
    big_enough = is_image and min(shape[1:]) >= NatureCNN.MIN_SIZE
    kind = model_config.kind
    if kind == "auto":
        # Frames smaller than the CNN's receptive field (tiny grids) go to an MLP.
        kind = "cnn" if big_enough else "mlp"
    if kind == "cnn":
        if not big_enough:
            raise ConfigError(
                f"model.kind=cnn needs image observations [C, H, W] of at least "
                f"{NatureCNN.MIN_SIZE}x{NatureCNN.MIN_SIZE}, and this environment's observations have "
                f"shape {shape}. Use model.kind=mlp (or auto), or a larger env.options.screen_size."
            )
        return NatureCNN(shape, model_config.cnn)
    if kind == "mlp":
        input_dim = int(np.prod(shape)) if shape else 1
        return MLP(input_dim, list(model_config.hidden_sizes), model_config.activation)
    raise ConfigError(f"model.kind must be one of auto, mlp, cnn; got {kind!r}.")


def check_discrete(action_space: gym.Space) -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"distrl's policies take discrete actions, and this environment's action space is "
            f"{action_space}. Choose an environment with a Discrete action space, or a "
            f"discretizing option of its family (see `distrl envs`)."
        )
    return int(action_space.n)


def build_model(
    model_config, obs_space: gym.Space, action_space: gym.Space, head: str = "actor_critic"
) -> ActorCritic | QNetwork | QTable:
    """The network an algorithm asks for (``head``): an actor-critic, a Q-network, or a
    Q-table, on the trunk that suits the observations."""
    num_actions = check_discrete(action_space)
    if head == "q_table":
        shape = tuple(obs_space.shape or ())
        if len(shape) != 1 or not isinstance(obs_space, gym.spaces.Box) or not np.all(obs_space.high == 1):
            raise ConfigError(
                f"Tabular Q-learning needs discrete states (one-hot observations), and this environment's "
                f"observations are {obs_space}. Use it on FrozenLake-v1 or distrl/NChain-v0, or discretize "
                f"a continuous environment with env.options.bins (see docs/algorithms.md)."
            )
        return QTable(shape[0], num_actions)
    trunk = build_trunk(model_config, obs_space)
    if head == "q_network":
        return QNetwork(trunk, num_actions, dueling=model_config.dueling)
    separate_value = isinstance(trunk, MLP) and not model_config.shared_trunk
    return ActorCritic(trunk, build_trunk(model_config, obs_space) if separate_value else None, num_actions)
