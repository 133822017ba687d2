"""Anything ``gymnasium.make`` accepts (classic control, toy text, ...). Options are passed
to ``gymnasium.make``; discrete observations become one-hot vectors. ``bins`` and ``bounds``
discretize a continuous observation into grid cells, for tabular methods."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym

from distrl.envs.wrappers import Discretize, EpisodeStats, OneHot

DEFAULTS = {"one_hot": True, "bins": None, "bounds": None}

# A discretization that makes CartPole-v1 learnable by a table: cart position and velocity
# hardly matter for balancing, the pole's angle and angular velocity do.
CARTPOLE_BINS = [1, 1, 6, 12]
CARTPOLE_BOUNDS = [[-4.8, 4.8], [-3.0, 3.0], [-0.21, 0.21], [-3.5, 3.5]]


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    one_hot = options.pop("one_hot", DEFAULTS["one_hot"])
    bins, bounds = options.pop("bins", None), options.pop("bounds", None)
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
    return env
