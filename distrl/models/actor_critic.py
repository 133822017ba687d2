from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.envs.packed import PackedSpace
from distrl.errors import ConfigError
from distrl.models.cnn import NatureCNN
from distrl.models.heads import CONTINUOUS_ALGOS, ActionHead, build_head
from distrl.models.layers import orthogonal_init
from distrl.models.mlp import MLP
from distrl.models.multi_input import MultiInput
from distrl.models.q_network import QNetwork, QTable, Trunk
from distrl.models.recurrent import RecurrentCore


class ActorCritic(nn.Module):
    """An action head (``models/heads.py``: categorical, multi-categorical, Bernoulli or
    Gaussian, by the action space) and a value head, on one shared trunk or on two, with an
    optional recurrent core (``models/recurrent.py``) between the shared trunk and the heads.

    Feed-forward models take one observation per row: ``forward(obs [N, ...])``. A recurrent
    model also takes each row's state and whether its observation starts an episode; the
    learner unrolls whole fragments with ``evaluate``, which works for both kinds."""

    def __init__(
        self,
        policy_trunk: Trunk,
        value_trunk: Trunk | None,
        head: ActionHead,
        core: RecurrentCore | None = None,
        value_core: RecurrentCore | None = None,
    ):
        super().__init__()
        assert (value_core is None) or (core is not None and value_trunk is not None)
        self.policy_trunk = policy_trunk
        self.value_trunk = value_trunk  # None: the value head shares the policy trunk
        self.core = core
        # A separate value trunk gets its own memory: a shared core would take the value
        # loss's gradient, which on long or undiscounted returns swamps the policy's share of
        # the clipped gradient norm (as a shared trunk would; SB3's RecurrentPPO also
        # defaults to a critic LSTM of its own).
        self.value_core = value_core
        self.policy_head = head
        value_source = value_core or core or value_trunk or policy_trunk
        self.value_head = orthogonal_init(nn.Linear(value_source.output_dim, 1), gain=1.0)

    @property
    def recurrent(self) -> bool:
        return self.core is not None

    def initial_state(self, batch: int) -> torch.Tensor | None:
        """Zero states for ``batch`` env copies, ``[batch, S, H]`` (the policy core's rows,
        then the value core's); None without a core."""
        if self.core is None:
            return None
        states = [self.core.initial_state(batch)]
        if self.value_core is not None:
            states.append(self.value_core.initial_state(batch))
        return torch.cat(states, dim=1)

    def _split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.core is not None
        rows = self.core.state_rows
        return state[:, :rows], state[:, rows:]

    def _heads(self, features: torch.Tensor, value_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_autocast_enabled(features.device.type):
            # The learner's bf16 autocast (runtime.learner_precision) is for the trunk: bf16
            # logits would put about 1% of noise into PPO's ratio, against a 0.1 clip.
            with torch.autocast(features.device.type, enabled=False):
                return self._heads(features.float(), value_features.float())
        return self.policy_head(features), self.value_head(value_features).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(params [N, P], value [N])``: the action distribution's parameters (logits
        for discrete actions) and V(s)."""
        assert self.core is None, "a recurrent model steps with step() or unrolls with evaluate()"
        features = self.policy_trunk(obs)
        return self._heads(features, features if self.value_trunk is None else self.value_trunk(obs))

    def step(
        self, obs: torch.Tensor, state: torch.Tensor | None, episode_start: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step of every row: ``(params, value, new state)`` (the state is None and the
        other arguments are ignored without a core)."""
        if self.core is None:
            return (*self(obs), None)
        assert state is not None and episode_start is not None
        policy_state, value_state = self._split(state)
        features, new_state = self.core.step(self.policy_trunk(obs), policy_state, episode_start)
        value_features = features
        if self.value_core is not None and self.value_trunk is not None:
            value_features, value_state = self.value_core.step(self.value_trunk(obs), value_state, episode_start)
            new_state = torch.cat([new_state, value_state], dim=1)
        return (*self._heads(features, value_features), new_state)

    def evaluate(
        self, obs: torch.Tensor, episode_start: torch.Tensor | None, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A time-major batch ``obs [T, B, ...]`` -> ``(params [T, B, P], values [T, B])``. A
        recurrent model unrolls each column from ``state [B, S, H]``, its recorded state at the
        first step, resetting where ``episode_start [T, B]`` says."""
        T, B = obs.shape[:2]
        if self.core is None:
            params, values = self(obs.flatten(0, 1))
            return params.view(T, B, -1), values.view(T, B)
        assert state is not None and episode_start is not None, "a recurrent model needs states and episode starts"
        policy_state, value_state = self._split(state)
        features = self.policy_trunk(obs.flatten(0, 1)).view(T, B, -1)
        outputs, _ = self.core.unroll(features, policy_state, episode_start)
        value_outputs = outputs
        if self.value_core is not None and self.value_trunk is not None:
            value_features = self.value_trunk(obs.flatten(0, 1)).view(T, B, -1)
            value_outputs, _ = self.value_core.unroll(value_features, value_state, episode_start)
        return self._heads(outputs, value_outputs)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of ``actions`` under ``params`` (any leading axes)."""
        return self.policy_head.log_prob(params, actions)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """The mean entropy of the distributions ``params`` describe."""
        return self.policy_head.entropy(params).mean()

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        greedy: bool = False,
        state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Sample one action per row; returns what a fragment records about the behaviour
        policy: the action, its log-probability and the value estimate, and for a recurrent
        model the new state under ``"state"`` (the caller keeps it; fragments do not)."""
        params, value, new_state = self.step(obs, state, episode_start)
        action = self.policy_head.sample(params, greedy)
        out = {"actions": action, "logp": self.policy_head.log_prob(params, action), "values": value}
        if new_state is not None:
            out["state"] = new_state
        return out

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """What the envs receive for recorded actions (a Gaussian's sample clipped or squashed
        into the bounds; other actions as they are)."""
        return self.policy_head.to_env(actions)

    @torch.no_grad()
    def value(
        self, obs: torch.Tensor, state: torch.Tensor | None = None, episode_start: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.step(obs, state, episode_start)[1]


def build_trunk(model_config, obs_space: gym.Space, part: bool = False) -> Trunk:
    """Nature CNN for image stacks ``[C, H, W]``, MLP for vectors (``model.kind: auto``), and
    for packed Dict or Tuple observations one of those per part, concatenated."""
    if isinstance(obs_space, PackedSpace):
        return MultiInput(obs_space, lambda leaf: build_trunk(model_config, leaf, part=True), model_config.activation)
    shape = tuple(obs_space.shape or ())
    # A Dict's images are its uint8 parts (envs/packed.py); a float [C, H, W] part is numbers.
    # A uint8 [H, W] observation is one gray frame (Catch without a frame stack): one channel.
    is_image = (len(shape) == 3 and (not part or obs_space.dtype == np.uint8)) or (
        len(shape) == 2 and obs_space.dtype == np.uint8
    )
    big_enough = is_image and min(shape[-2:]) >= NatureCNN.MIN_SIZE
    kind = model_config.kind
    if kind == "auto" or (part and kind == "cnn"):
        # Frames smaller than the CNN's receptive field (tiny grids) go to an MLP, and so do
        # the vector parts of a Dict observation whatever model.kind says.
        kind = "cnn" if big_enough else "mlp"
    if kind == "cnn":
        if not big_enough:
            raise ConfigError(
                f"model.kind=cnn needs image observations ([C, H, W] or uint8 [H, W]) of at least "
                f"{NatureCNN.MIN_SIZE}x{NatureCNN.MIN_SIZE}, and this environment's observations have "
                f"shape {shape}. Use model.kind=mlp (or auto), or a larger env.options.screen_size."
            )
        return NatureCNN(shape, model_config.cnn)
    if kind == "mlp":
        input_dim = int(np.prod(shape)) if shape else 1
        return MLP(input_dim, list(model_config.hidden_sizes), model_config.activation)
    raise ConfigError(f"model.kind must be one of auto, mlp, cnn; got {kind!r}.")


def model_notes(model_config, obs_space: gym.Space) -> list[str]:
    """What the driver tells the user about the network this config gets on these
    observations, where it is not what the config's words suggest: a ``model.cnn`` choice
    that cannot apply (the observations get an MLP), and frames padded so that the conv
    layers see every pixel. ``nature`` is the default and cannot be told from an explicit
    choice, so only ``small`` is noted."""
    trunk = build_trunk(model_config, obs_space)
    cnns = [module for module in trunk.modules() if isinstance(module, NatureCNN)]
    notes = []
    if not cnns and model_config.cnn != "nature":
        notes.append(
            f"model.cnn={model_config.cnn} does not apply: observations of shape {tuple(obs_space.shape or ())} "
            f"get an MLP trunk (model.hidden_sizes); the CNN is for image frames of at least "
            f"{NatureCNN.MIN_SIZE}x{NatureCNN.MIN_SIZE}."
        )
    for cnn in cnns:
        if any(cnn.padding):
            height, width = cnn.padded[0] - cnn.padding[3], cnn.padded[1] - cnn.padding[1]
            notes.append(
                f"{height}x{width} frames are zero-padded to {cnn.padded[0]}x{cnn.padded[1]} so that the "
                f"{model_config.cnn} CNN's strided convolutions reach every pixel; a screen_size the "
                f"convolutions cover whole (36, 44, 52, ..., 84: 36 + 8k) avoids the padding."
            )
    return notes


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
    if head != "actor_critic" and model_config.recurrent != "none":
        raise ConfigError(
            f"model.recurrent={model_config.recurrent} gives a policy memory, and this algorithm's network is a "
            f"{head.replace('_', '-')} without one. Recurrent policies work with {CONTINUOUS_ALGOS}; use "
            f"model.recurrent=none here."
        )
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
    # Vector trunks are cheap to double; a CNN is shared by both heads.
    vectors_only = isinstance(trunk, MLP) or (isinstance(trunk, MultiInput) and not trunk.has_images)
    separate_value = vectors_only and not model_config.shared_trunk
    if model_config.recurrent != "none":
        # Memory for both heads: a core after the policy trunk, and one after the value trunk
        # where the value has its own (MLP trunks unless model.shared_trunk).
        def core_on(source: Trunk) -> RecurrentCore:
            return RecurrentCore(model_config.recurrent, source.output_dim, model_config.recurrent_size)

        core = core_on(trunk)
        head_of_core = build_head(model_config, core.output_dim, action_space)
        if not separate_value:
            return ActorCritic(trunk, None, head_of_core, core)
        value_trunk = build_trunk(model_config, obs_space)
        return ActorCritic(trunk, value_trunk, head_of_core, core, core_on(value_trunk))
    action_head = build_head(model_config, trunk.output_dim, action_space)
    return ActorCritic(trunk, build_trunk(model_config, obs_space) if separate_value else None, action_head)
