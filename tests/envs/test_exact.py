"""The exact returns that judge the tabular systems, against played episodes and brute force."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

from distrl.envs import make_env
from distrl.envs.exact import nchain_model, optimal_return, policy_return, toy_text_model


def played_mean(env_id: str, policy: np.ndarray, episodes: int, **options) -> tuple[float, float]:
    """Mean and standard error of the score of ``episodes`` real episodes of ``policy``."""
    env = make_env(env_id, seed=0, one_hot=False, **options)
    scores = []
    for _ in range(episodes):
        state, _ = env.reset()
        total, done = 0.0, False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[int(state)]))
            total += float(reward)
            done = terminated or truncated
        scores.append(total)
    env.close()
    return float(np.mean(scores)), float(np.std(scores) / np.sqrt(episodes))


def test_nchain_policy_returns_match_played_episodes():
    P, R = nchain_model()
    for policy in (np.zeros(5, int), np.ones(5, int), np.array([0, 1, 0, 1, 0])):
        mean, error = played_mean("distrl/NChain-v0", policy, 200)
        assert abs(policy_return(P, R, policy, 1000) - mean) < 4 * error + 1e-9, policy


def test_frozenlake_success_matches_played_episodes():
    env = gym.make("FrozenLake8x8-v1")
    P, R = toy_text_model(env)
    policy = np.random.default_rng(0).integers(0, 4, P.shape[0])
    mean, error = played_mean("FrozenLake8x8-v1", policy, 3000)
    assert abs(policy_return(P, R, policy, 200) - mean) < 4 * error + 1e-9


def test_optimum_is_at_least_every_stationary_policy():
    """Backward induction against all 32 stationary NChain policies: never worse than the
    best of them, and better only by what changing course in the last few steps earns, which
    is the same for any long enough episode."""
    P, R = nchain_model()
    gains = {}
    for horizon in (3, 50, 1000):
        best = max(policy_return(P, R, np.array(p), horizon) for p in itertools.product((0, 1), repeat=5))
        gains[horizon] = optimal_return(P, R, horizon) - best
        assert gains[horizon] >= -1e-9
    assert gains[50] == pytest.approx(gains[1000]) and gains[1000] > 0
    # Three steps are too few to reach the end and be paid: going back everywhere is optimal.
    assert optimal_return(P, R, 3) == pytest.approx(policy_return(P, R, np.ones(5, int), 3))
