"""GAE against a slow reference written from the definition: the advantage is the
(gamma*lambda)-discounted sum of TD errors up to the end of the episode."""

import numpy as np
import pytest
import torch

from distrl.algos.returns import gae


def slow_gae(rewards, values, bootstrap, terminated, truncated, timeout_values, gamma, lam):
    """A_t = sum_{l>=0} (gamma*lam)^l delta_{t+l}, summed step by step until the episode ends.
    delta_t bootstraps from: 0 after a terminal state, V(final obs) after a truncation, the next
    row's value inside the fragment, ``bootstrap`` after the last row."""
    T, B = rewards.shape
    advantages = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            total, weight = 0.0, 1.0
            for u in range(t, T):
                if terminated[u, b]:
                    next_value = 0.0
                elif truncated[u, b]:
                    next_value = timeout_values[u, b]
                elif u == T - 1:
                    next_value = bootstrap[b]
                else:
                    next_value = values[u + 1, b]
                delta = rewards[u, b] + gamma * next_value - values[u, b]
                total += weight * delta
                if terminated[u, b] or truncated[u, b]:
                    break
                weight *= gamma * lam
            advantages[t, b] = total
    return advantages


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.97, 0.0), (1.0, 0.5)])
def test_gae_matches_step_by_step_reference(gamma, lam):
    rng = np.random.default_rng(0)
    T, B = 37, 6
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap = rng.normal(size=B)
    terminated = rng.random((T, B)) < 0.08
    truncated = (rng.random((T, B)) < 0.08) & ~terminated
    truncated[3, 0] = terminated[3, 0] = True  # both at once: terminal wins
    timeout_values = rng.normal(size=(T, B))

    expected = slow_gae(rewards, values, bootstrap, terminated, truncated, timeout_values, gamma, lam)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64)
    advantages, returns = gae(
        as_tensor(rewards),
        as_tensor(values),
        as_tensor(bootstrap),
        torch.as_tensor(terminated),
        torch.as_tensor(truncated),
        gamma,
        lam,
        timeout_values=as_tensor(timeout_values),
    )
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(returns.numpy(), expected + values, rtol=1e-10, atol=1e-10)


def test_gae_with_lambda_one_gives_discounted_returns():
    """lambda = 1 and no episode end: returns are the discounted sum of rewards plus the
    discounted bootstrap, independent of the values."""
    rng = np.random.default_rng(1)
    T, B, gamma = 10, 3, 0.9
    rewards = rng.normal(size=(T, B))
    bootstrap = rng.normal(size=B)
    no = torch.zeros((T, B), dtype=torch.bool)
    _, returns = gae(
        torch.as_tensor(rewards), torch.as_tensor(rng.normal(size=(T, B))), torch.as_tensor(bootstrap), no, no, gamma, 1.0
    )
    expected = np.zeros((T, B))
    for t in range(T):
        expected[t] = sum(gamma ** (u - t) * rewards[u] for u in range(t, T)) + gamma ** (T - t) * bootstrap
    np.testing.assert_allclose(returns.numpy(), expected, rtol=1e-10)


def test_truncation_without_timeout_values_bootstraps_zero():
    rewards = torch.ones(3, 1, dtype=torch.float64)
    values = torch.zeros(3, 1, dtype=torch.float64)
    truncated = torch.tensor([[False], [True], [False]])
    terminated = torch.zeros(3, 1, dtype=torch.bool)
    advantages, _ = gae(rewards, values, torch.tensor([5.0], dtype=torch.float64), terminated, truncated, 0.5, 1.0)
    # Step 1 ends the episode: A_1 = 1, A_0 = 1 + 0.5 * 1; step 2 bootstraps 5.
    np.testing.assert_allclose(advantages[:, 0].numpy(), [1.5, 1.0, 1.0 + 0.5 * 5.0])
