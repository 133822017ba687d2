"""IMPALA: importance-weighted actor-learner (Espeholt et al. 2018). Workers sample
continuously with whatever weights they last pulled; the learner consumes fragments as
they arrive and corrects for the lag with V-trace targets (``returns.vtrace``).

    L = -E[rho_s (r_s + gamma v_{s+1} - V(x_s)) log pi(a_s|x_s)]
        + c_v * 0.5 * E[(v_s - V(x_s))^2] - c_e * H[pi(.|x_s)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from distrl.algos.common import OptimizedAlgorithm, clip_rewards, unroll_with_bootstrap
from distrl.algos.interface import AlgorithmSpec, Progress, StreamingSettings, Update
from distrl.algos.returns import vtrace
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class IMPALAConfig:
    """Defaults are the paper's Atari settings (Table G.1): RMSProp lr 6e-4 (alpha 0.99,
    eps 0.01), entropy 0.01, baseline 0.5, gradient norm 40, rho = c = 1."""

    lr: float = option(6e-4, "learning rate (at the start, with lr_schedule linear)")
    lr_schedule: str = option(
        "linear",
        "linear: the lr falls to 0 over stop.env_steps (or anneal_env_steps); constant: it stays",
        choices=("linear", "constant"),
    )
    anneal_env_steps: Optional[int] = option(
        None, "horizon of the linear decay for runs without stop.env_steps (null: constant lr)"
    )
    optimizer: str = option("rmsprop", "the optimizer", choices=("rmsprop", "adam"))
    rmsprop_alpha: float = option(0.99, "RMSProp's smoothing constant")
    optimizer_eps: float = option(0.01, "the optimizer's epsilon")
    gamma: float = option(0.99, "discount factor")
    vf_coef: float = option(0.5, "weight of the value loss (the paper's baseline cost)")
    ent_coef: float = option(0.01, "weight of the entropy bonus")
    max_grad_norm: float = option(40.0, "gradients are clipped to this global norm")
    clip_rho: float = option(1.0, "V-trace's rho-bar: truncation of the importance weights in the targets")
    clip_c: float = option(1.0, "V-trace's c-bar: truncation of the trace-cutting coefficients")
    reward_clip: Optional[float] = option(None, "the loss sees rewards clipped to [-r, r] (null: raw rewards)")
    reward_scale: float = option(1.0, "the loss sees rewards times this, then reward_clip (reported returns stay raw)")
    fragments_per_update: int = option(0, "fragments per learner batch, taken in arrival order (0: one per worker)")

    section = "impala"

    def __post_init__(self):
        for key in ("lr", "max_grad_norm", "clip_rho", "clip_c"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key '{self.section}.{key}' must be > 0, got {getattr(self, key)}.")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"Config key '{self.section}.gamma' must be in [0, 1], got {self.gamma}.")
        if self.fragments_per_update < 0:
            raise ValueError(f"Config key '{self.section}.fragments_per_update' must be >= 0.")


PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 8, "fragment_length": 20},
        "impala": {"anneal_env_steps": 50_000_000, "reward_clip": 1.0},
    },
    # Tuned here on CartPole-v1 with 2 workers: Adam, 16-step fragments, lr 1e-3 annealed over
    # the budget. With lr 2e-3 it was faster when it worked but climbed to ~400 and collapsed in
    # 3 of 12 runs, staying under 475 at 400k steps. Rewards scaled by 0.1 for the loss: with
    # raw returns (up to 100) the value loss swamped the clipped gradient norm (norms 10-35
    # against a clip of 0.5), and about 1 run in 10 stalled between 250 and 450 with its
    # entropy stuck near 0.55; scaled, 12 of 12 seeds reached 475 in 99k-119k steps, against
    # 94k-174k and a stall in 10 unscaled (BENCHMARKS.md, 2026-12-06, issue 33).
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 16},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "impala": {
            "lr": 1e-3,
            "optimizer": "adam",
            "optimizer_eps": 1e-5,
            "anneal_env_steps": 300_000,
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "gamma": 0.99,
            "reward_scale": 0.1,
        },
    },
}


def vtrace_targets(model: ActorCritic, batch: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """Runs the current model over a time-major batch and computes V-trace targets. A step cut
    by a time limit gets gamma * V(final obs) added to its reward and discount 0, so V-trace's
    ``discounts`` input carries both episode ends."""
    rewards = clip_rewards(batch["rewards"], config.reward_clip, config.reward_scale)
    T, B = rewards.shape
    params, values, bootstrap = unroll_with_bootstrap(model, batch)
    # For a joint action (MultiDiscrete, MultiBinary, Box) log pi sums over its parts, so the
    # importance ratio is the product of the per-dimension ratios.
    target_logp = model.log_prob(params, batch["actions"])
    entropy = model.entropy(params)
    cut = batch["truncated"] & ~batch["terminated"]
    rewards = rewards + torch.where(cut, config.gamma * batch["timeout_value"], torch.zeros_like(rewards))
    discounts = config.gamma * (~(batch["terminated"] | batch["truncated"])).to(rewards.dtype)
    vs, pg_advantages = vtrace(
        batch["logp"],
        target_logp.detach(),
        rewards,
        values.detach(),
        bootstrap,
        discounts,
        clip_rho=config.clip_rho,
        clip_c=config.clip_c,
    )
    return {
        "entropy": entropy,
        "target_logp": target_logp,
        "values": values,
        "vs": vs,
        "pg_advantages": pg_advantages,
    }


def impala_loss(targets: dict[str, torch.Tensor], config: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The paper's loss (section 4.2) on the output of ``vtrace_targets``."""
    policy_loss = -(targets["pg_advantages"] * targets["target_logp"]).mean()
    value_loss = 0.5 * ((targets["vs"] - targets["values"]) ** 2).mean()
    policy_entropy = targets["entropy"]
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * policy_entropy
    return loss, {
        "policy_loss": policy_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": policy_entropy.detach(),
    }


class IMPALA(OptimizedAlgorithm):
    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        lr = self.scheduled_lr(progress.env_steps)
        # V-trace runs along each env column: a learner's columns need no one else's.
        batch, share = self.shard.columns(batch)
        targets = vtrace_targets(self.model, batch, self.config)
        loss, stats = impala_loss(targets, self.config)
        grad_norm = self.gradient_step(loss, weight=share)
        with torch.no_grad():
            rho = (targets["target_logp"] - batch["logp"]).exp()
        return Update(
            {
                **{k: float(v) for k, v in stats.items()},
                "grad_norm": grad_norm,
                "learning_rate": lr,
                "mean_rho": float(rho.mean()),
            }
        )


SPEC = AlgorithmSpec(
    name="impala",
    config_class=IMPALAConfig,
    algorithm_class=IMPALA,
    flow=lambda config: StreamingSettings(fragments_per_update=config.fragments_per_update),
    paper=(
        "Espeholt et al. 2018, IMPALA: Scalable Distributed Deep-RL with Importance Weighted "
        "Actor-Learner Architectures"
    ),
    presets=PRESETS,
)
