"""Exact expected returns for the small tabular systems (NChain, FrozenLake), by dynamic
programming over their known transition tables.

A learned greedy policy is judged here against the optimum itself rather than against a
noisy average of played episodes: "reaches the optimal policy's return" is then a number
that does not depend on the evaluation's luck.

A model is ``(P, R)``: ``P[s, a, s']`` transition probabilities and ``R[s, a]`` expected
rewards. Episode ends become an absorbing state that pays nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def nchain_model(
    n: int = 5, slip: float = 0.2, small: float = 2.0, large: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """``distrl/NChain-v0``: action 0 walks forward (the last state pays ``large`` and stays),
    action 1 returns to state 0 for ``small``; with probability ``slip`` the other happens."""
    P = np.zeros((n, 2, n))
    R = np.zeros((n, 2))
    for s in range(n):
        forward, forward_reward = (s + 1, 0.0) if s < n - 1 else (s, large)
        for a in (0, 1):
            p_forward = 1 - slip if a == 0 else slip
            P[s, a, forward] += p_forward
            P[s, a, 0] += 1 - p_forward
            R[s, a] = p_forward * forward_reward + (1 - p_forward) * small
    return P, R


def toy_text_model(env: Any) -> tuple[np.ndarray, np.ndarray]:
    """A gymnasium toy-text env (FrozenLake, ...) from its ``P`` table, with one extra
    absorbing state (the last index) for every terminal transition."""
    table = env.unwrapped.P
    n = len(table)
    actions = len(table[0])
    P = np.zeros((n + 1, actions, n + 1))
    R = np.zeros((n + 1, actions))
    P[n, :, n] = 1.0
    for s in range(n):
        for a in range(actions):
            for probability, next_state, reward, terminated in table[s][a]:
                P[s, a, n if terminated else next_state] += probability
                R[s, a] += probability * reward
    return P, R


def policy_return(P: np.ndarray, R: np.ndarray, policy: np.ndarray, horizon: int, start: int = 0) -> float:
    """Expected total reward of a deterministic stationary ``policy[s]`` over ``horizon``
    steps from ``start`` (no discount: the score an episode of that length gives)."""
    states = np.arange(P.shape[0])
    P_pi, R_pi = P[states, policy], R[states, policy]
    value = np.zeros(P.shape[0])
    for _ in range(horizon):
        value = R_pi + P_pi @ value
    return float(value[start])


def optimal_return(P: np.ndarray, R: np.ndarray, horizon: int, start: int = 0) -> float:
    """The best expected total reward over ``horizon`` steps from ``start``: backward
    induction, so the optimum may change its action near the end of the episode."""
    value = np.zeros(P.shape[0])
    for _ in range(horizon):
        value = (R + P @ value).max(1)
    return float(value[start])
