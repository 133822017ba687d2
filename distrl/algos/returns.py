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
