"""Anything ``gymnasium.make`` accepts (classic control, toy text, ...). Options are passed
to ``gymnasium.make``; discrete observations become one-hot vectors."""

from __future__ import annotations

import gymnasium as gym

from distrl.envs.wrappers import EpisodeStats, OneHot

DEFAULTS = {"one_hot": True}


def make(env_id: str, **options) -> gym.Env:
    one_hot = options.pop("one_hot", DEFAULTS["one_hot"])
    env = gym.make(env_id, disable_env_checker=True, **options)
    env = EpisodeStats(env)
    if one_hot and isinstance(env.observation_space, gym.spaces.Discrete):
        env = OneHot(env)
    return env
