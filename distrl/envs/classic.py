"""Anything ``gymnasium.make`` accepts (classic control, toy text, ...). Options are passed
to ``gymnasium.make``; discrete observations become one-hot vectors. ``bins`` and ``bounds``
discretize a continuous observation into grid cells, for tabular methods; ``hide`` zeroes
chosen entries of a vector observation (a partially observable variant)."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np

from distrl.envs.wrappers import Discretize, EpisodeStats, OneHot

DEFAULTS = {"one_hot": True, "bins": None, "bounds": None, "hide": None}

# A discretization that makes CartPole-v1 learnable by a table: cart position and velocity
# hardly matter for balancing, the pole's angle and angular velocity do.
CARTPOLE_BINS = [1, 1, 6, 12]
CARTPOLE_BOUNDS = [[-4.8, 4.8], [-3.0, 3.0], [-0.21, 0.21], [-3.5, 3.5]]


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    one_hot = options.pop("one_hot", DEFAULTS["one_hot"])
    bins, bounds = options.pop("bins", None), options.pop("bounds", None)
    hide = options.pop("hide", None)
    if render_mode is not None:  # gymnasium.make hands every key to the constructor, None too
        options["render_mode"] = render_mode
    env = gym.make(env_id, disable_env_checker=True, **options)
    env = EpisodeStats(env)
    if bins is not None:
        if bounds is None:
            from distrl.errors import ConfigError

            raise ConfigError("env.options.bins needs env.options.bounds: one [low, high] per observation dimension.")
        env = Discretize(env, list(bins), [list(b) for b in bounds])
    if one_hot and isinstance(env.observation_space, gym.spaces.Discrete):
        env = OneHot(env)
    if hide:
        env = _hide(env, list(hide))
    return env


def _hide(env: gym.Env, indices: list[int]) -> gym.Env:
    """Zero the observation entries at ``indices``: CartPole with ``hide: [1, 3]`` shows
    positions and no velocities, a partially observable task that a memoryless policy
    cannot fully solve and a recurrent one can."""
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        from distrl.errors import ConfigError

        raise ConfigError(f"env.options.hide zeroes entries of a vector observation; this env's is {space}.")
    if not all(0 <= i < space.shape[0] for i in indices):
        from distrl.errors import ConfigError

        raise ConfigError(
            f"env.options.hide: indices must be in [0, {space.shape[0]}) for this env's observations; got {indices}."
        )
    mask = np.ones(space.shape, dtype=space.dtype)
    mask[indices] = 0
    return gym.wrappers.TransformObservation(env, lambda obs: obs * mask, space)
