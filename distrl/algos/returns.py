"""Return and advantage estimators, time-major ``[T, B]`` torch tensors.

Conventions shared by every function here:

- ``rewards[t]`` is the reward for the action taken at step ``t``.
- ``terminated[t]``: the episode ended at step ``t`` in a terminal state; nothing is
  bootstrapped past it.
- ``truncated[t]``: the episode was cut at step ``t`` by a time limit (or the end of a data
  stream). The state is not terminal, so its value is bootstrapped from
  ``timeout_values[t]`` = V(final observation), and nothing is carried over into the next
  episode, which starts at ``t + 1``.
- ``bootstrap_value`` ``[B]`` is V(s_T), the value of the observation after the last step.
"""

from __future__ import annotations

import torch


def next_state_values(
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    timeout_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """V(s_{t+1}) for every step: the next row of ``values``, the bootstrap after the last row,
    V(final observation) after a truncation, and 0 after a terminal state."""
    next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
    if timeout_values is not None:
        next_values = torch.where(truncated, timeout_values, next_values)
    else:
        next_values = torch.where(truncated, torch.zeros_like(next_values), next_values)
    return torch.where(terminated, torch.zeros_like(next_values), next_values)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    lam: float,
    timeout_values: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, "High-Dimensional Continuous
    Control Using Generalized Advantage Estimation", eq. 16):

        delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lam * A_{t+1}      (A is reset at episode ends)

    Returns ``(advantages, returns)`` with ``returns = advantages + values``, the value target.
    """
    next_values = next_state_values(values, bootstrap_value, terminated, truncated, timeout_values)
    deltas = rewards + gamma * next_values - values
    episode_continues = (~(terminated | truncated)).to(rewards.dtype)
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * episode_continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def discounted_returns(
    rewards: torch.Tensor,
    bootstrap_value: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    timeout_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """The "n-step" returns of A3C (Mnih et al. 2016, Algorithm S3): every step of a fragment
    looks ahead to the fragment's end, bootstrapping from V(s_T), or to its episode's end:

        R_t = r_t + gamma * R_{t+1},   R_T = V(s_T)

    with R_{t+1} replaced by 0 after a terminal state and by V(final obs) after a truncation.
    """
    zeros = torch.zeros_like(rewards)
    returns = torch.zeros_like(rewards)
    running = bootstrap_value.to(rewards.dtype)
    after_cut = timeout_values if timeout_values is not None else zeros
    for t in reversed(range(rewards.shape[0])):
        running = torch.where(truncated[t], after_cut[t], running)
        running = torch.where(terminated[t], zeros[t], running)
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def nstep_targets(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n-step return windows for replay (Sutton & Barto 7.1; Hessel et al. 2018): each row of
    the ``[B, n]`` inputs holds the n steps that follow one sampled transition.

        G = sum_{j < m} gamma^j r_j,   target = G + bootstrap_discount * Q(s_m)

    where m is n, or the step at which the episode ended if sooner. Returns ``(G,
    bootstrap_discount, m)``: ``bootstrap_discount`` is gamma^m, or 0 when the episode
    terminated inside the window; ``m`` says which observation to bootstrap from (after a
    truncation, the caller bootstraps from the value recorded for the cut, see DQN).
    """
    batch, n = rewards.shape
    ended = terminated | truncated
    # m = 1 + index of the first episode end, or n if none.
    first_end = torch.where(ended.any(1), ended.float().argmax(1), torch.full((batch,), n - 1, device=rewards.device))
    steps = torch.where(ended.any(1), first_end + 1, torch.full_like(first_end, n))
    j = torch.arange(n, device=rewards.device)
    inside = j.unsqueeze(0) < steps.unsqueeze(1)
    powers = gamma ** j.to(rewards.dtype)
    returns = (rewards * powers * inside).sum(1)
    terminal = terminated.gather(1, (steps - 1).unsqueeze(1)).squeeze(1)
    bootstrap_discount = torch.where(terminal, torch.zeros_like(returns), gamma ** steps.to(rewards.dtype))
    return returns, bootstrap_discount, steps


def vtrace(
    behaviour_logp: torch.Tensor,
    target_logp: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    discounts: torch.Tensor,
    clip_rho: float = 1.0,
    clip_c: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """V-trace targets (Espeholt et al. 2018, "IMPALA", eq. 1 and Remark 1), time-major [T, B].

        rho_t = min(clip_rho, pi(a_t|x_t) / mu(a_t|x_t)),   c_t = min(clip_c, pi / mu)
        delta_t = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
        v_s = V(x_s) + delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1}))
        pg_advantage_s = rho_s (r_s + gamma_s v_{s+1} - V(x_s))

    ``discounts`` is gamma_t: gamma, or 0 after a terminal state. ``bootstrap_value`` is
    V(x_T). Returns ``(vs, pg_advantages)``, both without gradient.
    """
    with torch.no_grad():
        ratios = (target_logp - behaviour_logp).exp()
        rhos = ratios.clamp(max=clip_rho)
        cs = ratios.clamp(max=clip_c)
        next_values = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)
        deltas = rhos * (rewards + discounts * next_values - values)
        corrections = torch.zeros_like(values)
        running = torch.zeros_like(bootstrap_value)
        for t in reversed(range(values.shape[0])):
            running = deltas[t] + discounts[t] * cs[t] * running
            corrections[t] = running
        vs = values + corrections
        next_vs = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)
        pg_advantages = rhos * (rewards + discounts * next_vs - values)
    return vs, pg_advantages
