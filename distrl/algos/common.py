"""Pieces every algorithm file would otherwise write again: optimizers, learning-rate
schedules, reward clipping, advantage normalisation, PPO's clipped surrogate, and a
base class that owns one optimizer and its checkpoint state."""

from __future__ import annotations

from typing import Any, Iterable, Literal, Optional, overload

import torch
import torch.nn as nn

from distrl.algos.parallel import ALONE, Shard


def make_optimizer(
    name: str, parameters: Iterable[nn.Parameter], lr: float, eps: float, rmsprop_alpha: float = 0.99
) -> torch.optim.Optimizer:
    """RMSProp (A3C's and IMPALA's papers; no momentum, centered=False) or Adam.

    Adam is torch's fused kernel and RMSProp its multi-tensor one: on a CPU, torch's default
    steps one parameter at a time, which for small networks costs more than the gradient
    (Adam on CartPole's two 64-64 MLPs: 502 us per step by default, 126 us fused)."""
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, alpha=rmsprop_alpha, eps=eps, foreach=True)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, eps=eps, fused=True)
    raise ValueError(f"unknown optimizer {name!r}: expected 'rmsprop' or 'adam'")


def remaining_fraction(schedule: str, env_steps: int, horizon: Optional[int]) -> float:
    """1 at the start, falling linearly to 0 at ``horizon`` env steps ("linear"); 1 always
    for "constant" or a run without a horizon."""
    if schedule == "constant" or not horizon:
        return 1.0
    return max(0.0, 1.0 - env_steps / horizon)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_rewards(rewards: torch.Tensor, clip: Optional[float], scale: float = 1.0) -> torch.Tensor:
    """Rewards times ``scale``, then clipped to [-clip, clip] (Mnih et al. 2015), or not with
    None. Workers and metrics always see the raw reward; only the loss sees this one. A scale
    keeps returns like Pendulum's (down to -16 a step) in the range where a value loss does not
    swamp the policy's share of the clipped gradient norm."""
    rewards = rewards * scale if scale != 1.0 else rewards
    return rewards if clip is None else rewards.clamp(-clip, clip)


def unroll(
    model: Any, batch: dict[str, torch.Tensor], columns: Optional[torch.Tensor | slice] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The current model's ``(params [T, B, P], values [T, B])`` on a time-major batch (or on
    its env ``columns``). A recurrent model unrolls each column from the state its worker
    recorded at the fragment's first step, through the whole fragment."""
    # A feed-forward model reads observations only (hand-built batches may carry nothing else).
    obs, starts, state = batch["obs"], batch.get("episode_start"), batch.get("initial_state")
    if columns is not None:
        obs = obs[:, columns]
        starts = None if starts is None else starts[:, columns]
        state = None if state is None else state[columns]
    return model.evaluate(obs, starts, state)


def unroll_with_bootstrap(
    model: Any, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`unroll` plus V(last_obs) ``[B]`` (without gradient). A recurrent model needs the
    state after the last step for it, so it unrolls one step further, over ``last_obs``."""
    if not getattr(model, "recurrent", False):
        params, values = unroll(model, batch)
        with torch.no_grad():
            bootstrap = model(batch["last_obs"])[1]
        return params, values, bootstrap
    done = batch["terminated"][-1] | batch["truncated"][-1]
    extended = {
        "obs": torch.cat([batch["obs"], batch["last_obs"].unsqueeze(0)]),
        "episode_start": torch.cat([batch["episode_start"], done.unsqueeze(0)]),
        "initial_state": batch["initial_state"],
    }
    params, values = unroll(model, extended)
    return params[:-1], values[:-1], values[-1].detach()


def minibatches(size: int, count: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """One pass over ``size`` items (transitions, or fragment columns) in a random order, as
    ``count`` index sets that together hold every item (sizes differ by one at most); fewer
    sets when there are fewer items. PPO and APPO each take ``epochs`` such passes."""
    return torch.tensor_split(torch.randperm(size, device=device), min(count, size))


def clip_gradients(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``parameters`` to a global L2 norm of at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_`` does (the same norm, the same 1e-6 guard); returns the
    norm before clipping, as a tensor. Four ops on the gradients and no per-call grouping by
    device and dtype, where torch's spends 68 us of a 1.1 ms CartPole step (one device and
    dtype here: the model's)."""
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (norm + 1e-6)).clamp(max=1.0))
    return norm


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """PPO's clipped objective (Schulman et al. 2017, eq. 7), as a loss to minimise:
    -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]."""
    return torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - clip_coef, 1 + clip_coef)).mean()


class OptimizedAlgorithm:
    """Base of the algorithms that train one model with one optimizer: the learning-rate
    schedule over the run's budget, the clipped gradient step, and the checkpoint state.

    ``budget_env_steps`` is the run's stop.env_steps; schedules anneal over it, or over the
    config's ``anneal_env_steps`` for a run without one (a reward or time stop only).
    """

    def __init__(
        self,
        config: Any,
        model: nn.Module,
        budget_env_steps: Optional[int],
        optimizer: Optional[torch.optim.Optimizer] = None,
    ):
        self.config = config
        self.model: Any = model  # an ActorCritic, QNetwork or QTable, by the algorithm
        # Without one given, the config's: ``optimizer``, ``lr``, ``optimizer_eps``, ``rmsprop_alpha``.
        self.optimizer = optimizer or make_optimizer(
            config.optimizer, model.parameters(), config.lr, config.optimizer_eps, config.rmsprop_alpha
        )
        self.parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        # This learner's share of each gradient step among the run's learners (algos/parallel.py);
        # the learner sets it with runtime.num_learners > 1.
        self.shard: Shard = ALONE
        self.horizon = budget_env_steps or getattr(config, "anneal_env_steps", None)
        # Gradient steps skipped for a NaN or Inf loss or gradient: in all, and in a row now.
        self.nonfinite_steps = 0
        self.nonfinite_in_a_row = 0

    def remaining(self, env_steps: int) -> float:
        return remaining_fraction(getattr(self.config, "lr_schedule", "constant"), env_steps, self.horizon)

    def scheduled_lr(self, env_steps: int) -> float:
        """Sets and returns the learning rate for this point of the run."""
        lr = self.config.lr * self.remaining(env_steps)
        set_learning_rate(self.optimizer, lr)
        return lr

    @overload
    def gradient_step(self, loss: torch.Tensor, *, weight: float = 1.0) -> float: ...
    @overload
    def gradient_step(self, loss: torch.Tensor, sync: Literal[False], *, weight: float = 1.0) -> torch.Tensor: ...

    def gradient_step(self, loss: torch.Tensor, sync: bool = True, *, weight: float = 1.0) -> float | torch.Tensor:
        """One optimizer step on ``loss``, gradients clipped to ``config.max_grad_norm``;
        returns the norm before clipping (``sync=False``: as a tensor). ``weight``: the share
        of the step's samples that ``loss`` was taken over, when learners share the step
        (``self.shard``); the gradient applied is the share-weighted sum of theirs.

        A NaN or Inf loss gives a non-finite gradient norm: the step is skipped (weights and
        optimizer state stay as they were) and counted, since one such step would turn every
        weight into NaN for good. The check reads the norm on the host, one sync per step on
        a GPU, as AMP's GradScaler does for the same reason."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.shard.sum_gradients(self.parameters, weight)
        grad_norm = clip_gradients(self.parameters, self.config.max_grad_norm)
        if self.finite_step(bool(torch.isfinite(grad_norm))):
            self.optimizer.step()
        return float(grad_norm) if sync else grad_norm.detach()

    def finite_step(self, finite: bool) -> bool:
        """Count a gradient step that is skipped for being non-finite; returns ``finite``."""
        if finite:
            self.nonfinite_in_a_row = 0
        else:
            self.nonfinite_steps += 1
            self.nonfinite_in_a_row += 1
        return finite

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
