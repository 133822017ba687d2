from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.errors import ConfigError
from distrl.models.cnn import NatureCNN
from distrl.models.heads import CONTINUOUS_ALGOS, ActionHead, build_head
from distrl.models.layers import orthogonal_init
from distrl.models.mlp import MLP
from distrl.models.q_network import QNetwork, QTable, Trunk


class ActorCritic(nn.Module):
    """An action head (``models/heads.py``: categorical, multi-categorical, Bernoulli or
    Gaussian, by the action space) and a value head, on one shared trunk or on two."""

    def __init__(self, policy_trunk: Trunk, value_trunk: Trunk | None, head: ActionHead):
        super().__init__()
        self.policy_trunk = policy_trunk
        self.value_trunk = value_trunk  # None: the value head shares the policy trunk
        self.policy_head = head
        value_dim = (value_trunk or policy_trunk).output_dim
        self.value_head = orthogonal_init(nn.Linear(value_dim, 1), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(params [N, P], value [N])``: the action distribution's parameters (logits
        for discrete actions) and V(s)."""
        features = self.policy_trunk(obs)
        value_features = features if self.value_trunk is None else self.value_trunk(obs)
        return self.policy_head(features), self.value_head(value_features).squeeze(-1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of ``actions`` under ``params`` (any leading axes)."""
        return self.policy_head.log_prob(params, actions)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """The mean entropy of the distributions ``params`` describe."""
        return self.policy_head.entropy(params).mean()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, greedy: bool = False) -> dict[str, torch.Tensor]:
        """Sample one action per row; returns what a fragment records about the behaviour
        policy: the action, its log-probability and the value estimate."""
        params, value = self(obs)
        action = self.policy_head.sample(params, greedy)
        return {"actions": action, "logp": self.policy_head.log_prob(params, action), "values": value}

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the envs receive for recorded actions (a Gaussian's sample clipped or squashed
        into the bounds; other actions as they are)."""
        return self.policy_head.to_env(actions)

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


def check_discrete(action_space: gym.Space, algo: str = "this algorithm") -> int:
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"{algo} takes Discrete actions only (one Q-value per action), and this environment's action space is "
            f"{action_space}. Train it with {CONTINUOUS_ALGOS}, which take Box, MultiDiscrete and MultiBinary "
            f"actions too, or choose a discretizing option of its family (see `distrl envs`)."
        )
    return int(action_space.n)


def build_model(
    model_config, obs_space: gym.Space, action_space: gym.Space, head: str = "actor_critic"
) -> ActorCritic | QNetwork | QTable:
    """The network an algorithm asks for (``head``): an actor-critic, a Q-network, or a
    Q-table, on the trunk that suits the observations."""
    if head == "q_table":
        num_actions = check_discrete(action_space, "Tabular Q-learning")
        shape = tuple(obs_space.shape or ())
        if len(shape) != 1 or not isinstance(obs_space, gym.spaces.Box) or not np.all(obs_space.high == 1):
            raise ConfigError(
                f"Tabular Q-learning needs discrete states (one-hot observations), and this environment's "
                f"observations are {obs_space}. Use it on FrozenLake-v1 or distrl/NChain-v0, or discretize "
                f"a continuous environment with env.options.bins (see docs/algorithms.md)."
            )
        return QTable(shape[0], num_actions)
    if head == "q_network":
        num_actions = check_discrete(action_space, "DQN")
        return QNetwork(build_trunk(model_config, obs_space), num_actions, dueling=model_config.dueling)
    trunk = build_trunk(model_config, obs_space)
    action_head = build_head(model_config, trunk.output_dim, action_space)
    separate_value = isinstance(trunk, MLP) and not model_config.shared_trunk
    return ActorCritic(trunk, build_trunk(model_config, obs_space) if separate_value else None, action_head)
