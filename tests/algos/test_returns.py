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

    def as_tensor(a):
        return torch.as_tensor(a, dtype=torch.float64)

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
        torch.as_tensor(rewards),
        torch.as_tensor(rng.normal(size=(T, B))),
        torch.as_tensor(bootstrap),
        no,
        no,
        gamma,
        1.0,
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


def random_episodes(seed, T=29, B=5):
    rng = np.random.default_rng(seed)
    terminated = rng.random((T, B)) < 0.08
    truncated = (rng.random((T, B)) < 0.06) & ~terminated
    return rng, terminated, truncated


def test_discounted_returns_match_step_by_step_sums():
    from distrl.algos.returns import discounted_returns

    rng, terminated, truncated = random_episodes(2)
    T, B = terminated.shape
    gamma = 0.93
    rewards, bootstrap, timeout_values = rng.normal(size=(T, B)), rng.normal(size=B), rng.normal(size=(T, B))
    expected = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            total, discount = 0.0, 1.0
            for u in range(t, T):
                total += discount * rewards[u, b]
                discount *= gamma
                if terminated[u, b]:
                    break
                if truncated[u, b]:
                    total += discount * timeout_values[u, b]
                    break
            else:
                total += discount * bootstrap[b]
            expected[t, b] = total
    got = discounted_returns(
        torch.as_tensor(rewards),
        torch.as_tensor(bootstrap),
        torch.as_tensor(terminated),
        torch.as_tensor(truncated),
        gamma,
        timeout_values=torch.as_tensor(timeout_values),
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_nstep_targets_match_step_by_step_sums():
    from distrl.algos.returns import nstep_targets

    rng = np.random.default_rng(3)
    B, n, gamma = 200, 5, 0.9
    rewards = rng.normal(size=(B, n))
    terminated = rng.random((B, n)) < 0.1
    truncated = (rng.random((B, n)) < 0.1) & ~terminated
    returns, discounts, steps = nstep_targets(
        torch.as_tensor(rewards), torch.as_tensor(terminated), torch.as_tensor(truncated), gamma
    )
    for b in range(B):
        total, m, ended_terminal = 0.0, n, False
        for j in range(n):
            total += gamma**j * rewards[b, j]
            if terminated[b, j] or truncated[b, j]:
                m, ended_terminal = j + 1, bool(terminated[b, j])
                break
        assert returns[b].item() == pytest.approx(total, abs=1e-10)
        assert steps[b].item() == m
        assert discounts[b].item() == pytest.approx(0.0 if ended_terminal else gamma**m)


def slow_vtrace(behaviour_logp, target_logp, rewards, values, bootstrap, discounts, clip_rho, clip_c):
    """v_s = V(x_s) + sum_{t >= s} (prod_{i<t} gamma_i c_i) rho_t delta_t, written as a sum."""
    T, B = rewards.shape
    ratio = np.exp(target_logp - behaviour_logp)
    rho, c = np.minimum(clip_rho, ratio), np.minimum(clip_c, ratio)
    next_values = np.concatenate([values[1:], bootstrap[None]], 0)
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total, weight = 0.0, 1.0
            for t in range(s, T):
                total += weight * rho[t, b] * (rewards[t, b] + discounts[t, b] * next_values[t, b] - values[t, b])
                weight *= discounts[t, b] * c[t, b]
            vs[s, b] = values[s, b] + total
    next_vs = np.concatenate([vs[1:], bootstrap[None]], 0)
    pg = rho * (rewards + discounts * next_vs - values)
    return vs, pg


@pytest.mark.parametrize("clip_rho,clip_c", [(1.0, 1.0), (2.0, 0.5), (100.0, 100.0)])
def test_vtrace_matches_the_sum_form(clip_rho, clip_c):
    from distrl.algos.returns import vtrace

    rng, terminated, _ = random_episodes(4)
    T, B = terminated.shape
    behaviour_logp = np.log(rng.uniform(0.1, 0.9, (T, B)))
    target_logp = np.log(rng.uniform(0.1, 0.9, (T, B)))
    rewards, values, bootstrap = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B)
    discounts = 0.95 * ~terminated
    expected_vs, expected_pg = slow_vtrace(
        behaviour_logp, target_logp, rewards, values, bootstrap, discounts, clip_rho, clip_c
    )
    t = torch.as_tensor
    vs, pg = vtrace(
        t(behaviour_logp),
        t(target_logp),
        t(rewards),
        t(values),
        t(bootstrap),
        t(discounts),
        clip_rho=clip_rho,
        clip_c=clip_c,
    )
    np.testing.assert_allclose(vs.numpy(), expected_vs, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pg.numpy(), expected_pg, rtol=1e-9, atol=1e-9)


def test_on_policy_vtrace_equals_nstep_returns():
    """With pi = mu and rho = c = 1, v_s is the n-step return to the fragment's end (A3C's),
    and the policy-gradient advantage is r_s + gamma v_{s+1} - V(x_s)."""
    from distrl.algos.returns import discounted_returns, vtrace

    rng, terminated, _ = random_episodes(5)
    T, B = terminated.shape
    gamma = 0.97
    logp = torch.as_tensor(np.log(rng.uniform(0.1, 0.9, (T, B))))
    rewards, values, bootstrap = (torch.as_tensor(rng.normal(size=s)) for s in ((T, B), (T, B), (B,)))
    done = torch.as_tensor(terminated)
    vs, pg = vtrace(logp, logp, rewards, values, bootstrap, gamma * (~done).double())
    returns = discounted_returns(rewards, bootstrap, done, torch.zeros_like(done), gamma)
    np.testing.assert_allclose(vs.numpy(), returns.numpy(), rtol=1e-10, atol=1e-10)
    next_returns = torch.cat([returns[1:], bootstrap[None]])
    np.testing.assert_allclose(
        pg.numpy(), (rewards + gamma * (~done).double() * next_returns - values).numpy(), atol=1e-10
    )
