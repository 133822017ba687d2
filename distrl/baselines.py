"""The floor under every learning curve (``distrl baseline``): a uniformly random policy for
any env, and a hand-written heuristic where the tutorials compared against one.

A learned agent is only worth its compute if it beats these, so they are measured the way
``distrl eval`` measures a checkpoint: whole episodes through ``make_env``, raw game scores.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from distrl.envs import family_of, make_env
from distrl.envs.market_making import BUY, HOLD, SELL
from distrl.errors import ConfigError


def market_momentum(obs: np.ndarray, history: int) -> int:
    """Trend following on the mid price: long while it rose over the window, short while it
    fell, flat in between. The observation holds the window's bid/ask pairs relative to the
    current mid in spread units, then the position; a move smaller than one spread would not
    pay for crossing it, so it is ignored."""
    quotes = obs[: 2 * history].reshape(history, 2)
    position = int(round(float(obs[2 * history])))
    rise = -float(quotes[0].mean())  # the current mid is 0: minus the oldest mid
    if rise > 1.0 and position <= 0:
        return BUY
    if rise < -1.0 and position >= 0:
        return SELL
    return HOLD


# Heuristic policies per env id: (obs, the env's options) -> action.
HEURISTICS: dict[str, Callable[[np.ndarray, dict[str, Any]], int]] = {
    "distrl/MarketMaking-v0": lambda obs, options: market_momentum(obs, int(options.get("history", 10))),
}


def play(env_id: str, policy: str, episodes: int, seed: int, options: dict[str, Any]) -> list[float]:
    """The raw return of each of ``episodes`` whole episodes under ``policy``."""
    if policy == "heuristic" and env_id not in HEURISTICS:
        raise ConfigError(
            f"No heuristic policy is written for {env_id!r}; heuristics exist for {sorted(HEURISTICS)}. "
            f"--policy random works for every env."
        )
    # As in `distrl eval`: whole games, no training-only shortcuts such as life loss.
    env = make_env(env_id, seed=seed, **{**options, **family_of(env_id).eval_options})
    env.action_space.seed(seed)
    act: Callable[[Any], Any]
    if policy == "random":
        act = lambda obs: env.action_space.sample()  # noqa: E731
    else:
        heuristic = HEURISTICS[env_id]
        act = lambda obs: heuristic(np.asarray(obs), options)  # noqa: E731
    returns: list[float] = []
    obs, _ = env.reset()
    while len(returns) < episodes:
        obs, _, terminated, truncated, info = env.step(act(obs))
        if "episode_return" in info:  # make_env's EpisodeStats: the raw score of a whole game
            returns.append(float(info["episode_return"]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return returns
