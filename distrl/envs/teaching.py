"""distrl's own small environments, registered with gymnasium under the ``distrl/``
namespace: ``distrl/MarketMaking-v0``, ``distrl/Catch-v0``, ``distrl/NChain-v0``.

``gymnasium.make`` gives the raw environment; ``make_env`` adds the standard preprocessing
(Catch: frames scaled to 84x84 and stacked by 4, like the other pixel games; NChain: one-hot
states)."""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym

from distrl.envs.wrappers import EpisodeStats, FrameStack, OneHot, ResizeFrame, check_options
from distrl.errors import EnvironmentNotAvailable

IDS = {
    "distrl/MarketMaking-v0": "distrl.envs.market_making:MarketMakingEnv",
    "distrl/Catch-v0": "distrl.envs.catch:CatchEnv",
    "distrl/NChain-v0": "distrl.envs.nchain:NChainEnv",
}
# NChain has no terminal state; the classic setting plays 1000 steps per episode.
MAX_EPISODE_STEPS = {"distrl/NChain-v0": 1000}

DEFAULTS: dict[str, dict[str, Any]] = {
    "distrl/MarketMaking-v0": {
        "data": "synthetic",
        "split": "train",
        "test_fraction": 0.2,
        "history": 10,
        "episode_length": 1000,
        "fee": 0.0,
        "time_fee": 0.0,
        "data_format": "auto",
        "price_scale": None,
        "synthetic_length": 20_000,
        "data_seed": 0,
        "reward": "realized",
    },
    "distrl/Catch-v0": {"rows": 10, "columns": 10, "screen_size": 84, "frame_stack": 4},
    "distrl/NChain-v0": {"n": 5, "slip": 0.2, "small": 2.0, "large": 10.0, "one_hot": True},
}
# Options that shape the preprocessing rather than the environment itself.
_PREPROCESSING = {"screen_size", "frame_stack", "one_hot"}


def register() -> None:
    for env_id, entry_point in IDS.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry_point, max_episode_steps=MAX_EPISODE_STEPS.get(env_id))


def is_pixels(env_id: str) -> bool:
    return env_id == "distrl/Catch-v0"


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    register()
    defaults = DEFAULTS.get(env_id, {})
    check_options(env_id, options, defaults)
    opts = {**defaults, **options}
    env_kwargs = {k: v for k, v in opts.items() if k not in _PREPROCESSING}
    if render_mode is not None:
        if not is_pixels(env_id):  # checked here, before gymnasium warns about the mode
            raise EnvironmentNotAvailable(
                f"Environment {env_id!r} draws no pictures, so there is nothing to record; of distrl's "
                f"own environments, distrl/Catch-v0 does."
            )
        env_kwargs["render_mode"] = render_mode
    env = gym.make(env_id, disable_env_checker=True, **env_kwargs)
    env = EpisodeStats(env)
    if env_id == "distrl/Catch-v0":
        if opts["screen_size"]:
            env = ResizeFrame(env, opts["screen_size"], interpolation="nearest")
        if opts["frame_stack"] > 1:
            env = FrameStack(env, opts["frame_stack"])
    if opts.get("one_hot") and isinstance(env.observation_space, gym.spaces.Discrete):
        env = OneHot(env)
    return env
