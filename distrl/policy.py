"""A trained policy in a Python program: load a checkpoint, give it observations, get actions.

Nothing here starts Ray: a policy is used where the training cluster is not (a game loop,
a notebook, a service), so importing this module imports torch, gymnasium and the models only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
import yaml

from distrl import checkpoint as checkpoints
from distrl.algos import ALGORITHMS
from distrl.config import Config, resolve
from distrl.envs import custom, family_of, make_env
from distrl.errors import CheckpointError, DistrlError
from distrl.models import build_model


class Policy:
    """A policy network with the spaces it was trained on.

    ``act`` takes observations exactly as the env gives them (the env that ``make_env`` builds
    from the run's config, with its preprocessing: stacked frames, one-hot states, packed Dict
    observations) and returns what ``env.step`` takes. It plays exactly as ``distrl eval``
    does, which plays through this class.

    Attributes: ``config`` (the run's resolved config; None for a bare model), ``model`` (the
    torch module, in eval mode), ``observation_space``, ``action_space``, and ``checkpoint``
    (the checkpoint folder the weights came from; None for a bare model).
    """

    def __init__(
        self,
        model: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: Optional[Config] = None,
        checkpoint: Optional[Path] = None,
    ):
        self.model = model
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.checkpoint = checkpoint

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """The policy in a checkpoint folder, a ``state.pt`` file, or a run folder (its newest
        checkpoint). The checkpoint is read with ``torch.load(weights_only=True)``, so a file
        from elsewhere cannot run code here. The env is built once, to learn the spaces the
        network was sized for, and closed again; a user env's module is imported as in training
        (``env.imports``, ``env.entry_point``), so it must be importable here."""
        folder, state = checkpoints.load(path)
        config = config_of(state)
        custom.prepare(config.env)
        env = make_env(config.env.id, **eval_options(config))
        try:
            return cls.from_state(folder, state, config, env.observation_space, env.action_space)
        finally:
            env.close()

    @classmethod
    def from_state(
        cls, folder: Path, state: dict[str, Any], config: Config, observation_space: gym.Space, action_space: gym.Space
    ) -> Policy:
        """The policy of a checkpoint already read (``checkpoint.load``), for the spaces of an
        env the caller has made (``distrl eval`` makes its own, seeded and perhaps recording)."""
        model = build_model(config.model, observation_space, action_space, ALGORITHMS[config.algo].model_head)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as error:
            raise CheckpointError(
                f"The weights in {str(folder)!r} do not fit the {config.algo} model its config describes "
                f"({str(error).splitlines()[0]}). The checkpoint may come from another distrl version."
            ) from None
        model.eval()
        return cls(model, observation_space, action_space, config=config, checkpoint=folder)

    @property
    def recurrent(self) -> bool:
        """Whether the policy has memory, and so whether ``act`` takes and returns a state."""
        return bool(getattr(self.model, "recurrent", False))

    def initial_state(self, batch: Optional[int] = None) -> np.ndarray:
        """A recurrent policy's state at the start of an episode (zeros): ``[S, H]`` for one
        observation, ``[batch, S, H]`` for a batch. ``act(obs, None)`` starts from it too; to
        restart one row of a batch after its episode ended, put this row back into the state."""
        if not self.recurrent:
            raise DistrlError("This policy has no memory (model.recurrent: none), so it has no state to start from.")
        state = self.model.initial_state(1 if batch is None else batch).numpy()
        return state[0] if batch is None else state

    def act(self, obs: Any, state: Any = None, greedy: bool = True) -> Any:
        """The action for one observation (``obs.shape == observation_space.shape``), or an
        array of actions for a batch (one more leading axis): a batch is one network call,
        and gives the same actions as its rows one at a time.

        One action is what ``env.step`` takes: an ``int`` for ``Discrete``, an array for
        ``Box`` (clipped or squashed into the bounds as in training), ``MultiDiscrete`` and
        ``MultiBinary``.

        ``greedy=True`` (the default) takes the most likely action, so the same observation
        always gives the same action; ``greedy=False`` samples from the policy, drawing from
        torch's global generator (``torch.manual_seed`` makes a run repeatable; ``distrl
        eval`` seeds it with ``--seed``). A Q-network (DQN, Q-learning) has no distribution
        to sample: it takes argmax Q either way, breaking exact ties at random when sampling.

        A recurrent policy (``model.recurrent: lstm | gru``) remembers what it saw, so it
        cannot act on an observation alone: ``act(obs, state)`` returns ``(actions,
        next_state)`` and the caller passes ``next_state`` back with the next observation.
        ``state=None`` starts an episode (as does ``initial_state()``); the state has the
        observation's leading axes: ``[S, H]`` for one, ``[N, S, H]`` for a batch. A
        feed-forward policy returns the actions alone and refuses a state, which would
        otherwise be ignored without a word.
        """
        if state is not None and not self.recurrent:
            raise DistrlError(
                "This policy has no memory (model.recurrent: none): call act(obs) without a state. Only a recurrent "
                "policy (model.recurrent: lstm or gru) takes a state and returns (actions, next_state)."
            )
        array = np.asarray(obs)
        if array.dtype != self.observation_space.dtype:
            array = array.astype(self.observation_space.dtype)
        single = self._is_single(array)
        batch = array[None] if single else array
        memory: dict[str, torch.Tensor] = {}
        if self.recurrent:
            n = batch.shape[0]
            if state is None:
                memory = {"state": self.model.initial_state(n), "episode_start": torch.ones(n, dtype=torch.bool)}
            else:
                rows = torch.as_tensor(np.asarray(state, dtype=np.float32))
                rows = rows[None] if single else rows
                expected = tuple(self.model.initial_state(n).shape)
                if tuple(rows.shape) != expected:
                    raise DistrlError(
                        f"The state given to act() has shape {tuple(np.shape(state))}, and this policy's state for "
                        f"{'one observation' if single else f'a batch of {n}'} has shape "
                        f"{expected[1:] if single else expected}. Pass back the state act() returned, or None to "
                        f"start an episode."
                    )
                memory = {"state": rows, "episode_start": torch.zeros(n, dtype=torch.bool)}
        with torch.inference_mode():
            choice = self.model.act(torch.from_numpy(batch), greedy=greedy, **memory)
        actions = choice["actions"].numpy()
        if hasattr(self.model, "env_actions"):  # a Gaussian's sample, clipped or squashed into the bounds
            actions = self.model.env_actions(actions)
        if single:
            actions = actions[0].item() if actions.ndim == 1 else actions[0]
        if not self.recurrent:
            return actions
        next_state = choice["state"].numpy()
        return actions, next_state[0] if single else next_state

    def _is_single(self, obs: np.ndarray) -> bool:
        shape = tuple(self.observation_space.shape or ())
        if obs.ndim == len(shape) and obs.shape == shape:
            return True
        if obs.ndim == len(shape) + 1 and obs.shape[1:] == shape:
            return False
        raise DistrlError(
            f"act() takes one observation of shape {shape} or a batch of shape (N, {', '.join(map(str, shape))}), "
            f"and got an array of shape {obs.shape}. Give it the observations as the env of "
            f"{self._env_name()} returns them."
        )

    def _env_name(self) -> str:
        return repr(self.config.env.id) if self.config is not None else "the policy"

    def __repr__(self) -> str:
        algo = self.config.algo if self.config is not None else "?"
        return (
            f"Policy({algo} on {self._env_name()}, observations {self.observation_space}, "
            f"actions {self.action_space}{', recurrent' if self.recurrent else ''})"
        )


def config_of(state: dict[str, Any]) -> Config:
    """The resolved config a checkpoint was trained with."""
    return resolve(yaml.safe_load(state["config_yaml"]) or {})


def eval_options(config: Config, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The env options a trained policy plays with: the run's, with the family's evaluation
    options (whole games, raw scores) and the caller's on top."""
    return {**config.env.options, **family_of(config.env.id).eval_options, **(overrides or {})}
