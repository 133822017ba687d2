"""Advantage actor-critic, synchronous (A2C): the batched, synchronous variant of A3C
(Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning"; OpenAI
Baselines' A2C). One fragment from every worker, then one gradient step.

Loss (Mnih et al. 2016, Algorithm S3):

    L = -E[log pi(a_t|s_t) A_t] + c_v * 0.5 * E[(R_t - V(s_t))^2] - c_e * H[pi(.|s_t)]

with A_t = R_t - V(s_t) from n-step returns (``gae_lambda = 1``), or GAE(lambda) if < 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from distrl.algos.common import OptimizedAlgorithm, clip_rewards, unroll_with_bootstrap
from distrl.algos.interface import AlgorithmSpec, Progress, SynchronousSettings, Update
from distrl.algos.parallel import Shard, normalize
from distrl.algos.returns import gae
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class A2CConfig:
    """Defaults are OpenAI Baselines' / Stable-Baselines3's A2C: RMSProp, lr 7e-4, 5-step fragments."""

    lr: float = option(7e-4, "learning rate (at the start, with lr_schedule linear)")
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
    optimizer_eps: float = option(1e-5, "the optimizer's epsilon")
    gamma: float = option(0.99, "discount factor")
    gae_lambda: float = option(1.0, "1.0: n-step returns to the fragment's end, as in the paper; < 1: GAE(lambda)")
    vf_coef: float = option(0.5, "weight of the value loss")
    ent_coef: float = option(0.01, "weight of the entropy bonus")
    max_grad_norm: float = option(0.5, "gradients are clipped to this global norm")
    normalize_advantages: bool = option(False, "normalise advantages over each batch")
    reward_clip: Optional[float] = option(None, "the loss sees rewards clipped to [-r, r] (null: raw rewards)")
    reward_scale: float = option(1.0, "the loss sees rewards times this, then reward_clip (reported returns stay raw)")

    def __post_init__(self):
        for key in ("lr", "max_grad_norm"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key '{self.section}.{key}' must be > 0, got {getattr(self, key)}.")
        for key in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"Config key '{self.section}.{key}' must be in [0, 1], got {getattr(self, key)}.")

    section = "a2c"


# "pixels": Baselines' Atari settings (8 envs x 5 steps per worker, rewards clipped).
# "vector": tuned here on CartPole-v1 with 2 workers (solves it in about 90k-150k steps):
# Baselines' 5-step RMSProp A2C with a higher learning rate annealed over 300k steps,
# normalized advantages and no entropy bonus.
PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 8, "fragment_length": 5},
        "a2c": {"lr": 7e-4, "anneal_env_steps": 10_000_000, "ent_coef": 0.01, "reward_clip": 1.0},
    },
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 5},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "a2c": {
            "lr": 2e-3,
            "anneal_env_steps": 300_000,
            "gae_lambda": 1.0,
            "ent_coef": 0.0,
            "normalize_advantages": True,
            "max_grad_norm": 0.5,
        },
    },
}


def actor_critic_loss(
    model: ActorCritic, batch: dict[str, torch.Tensor], config: Any, shard: Optional[Shard] = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The A2C/A3C loss on a time-major batch ``[T, B]`` of one or more fragments (with
    ``shard``: on this learner's columns of it, advantages normalised over all learners')."""
    rewards = clip_rewards(batch["rewards"], config.reward_clip, config.reward_scale)
    params, values, bootstrap = unroll_with_bootstrap(model, batch)
    with torch.no_grad():
        advantages, returns = gae(
            rewards,
            values.detach(),
            bootstrap,
            batch["terminated"],
            batch["truncated"],
            config.gamma,
            config.gae_lambda,
            timeout_values=batch["timeout_value"],
        )
        if config.normalize_advantages:
            advantages = normalize(advantages, shard)
    logp = model.log_prob(params, batch["actions"]).flatten()
    policy_entropy = model.entropy(params)
    policy_loss = -(advantages.flatten() * logp).mean()
    value_loss = 0.5 * ((returns - values) ** 2).mean()
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * policy_entropy
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy": policy_entropy.detach()}
    return loss, stats


class A2C(OptimizedAlgorithm):
    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        lr = self.scheduled_lr(progress.env_steps)
        batch, share = self.shard.columns(batch)
        loss, stats = actor_critic_loss(self.model, batch, self.config, self.shard)
        grad_norm = self.gradient_step(loss, weight=share)
        return Update({**{k: float(v) for k, v in stats.items()}, "grad_norm": grad_norm, "learning_rate": lr})


SPEC = AlgorithmSpec(
    name="a2c",
    config_class=A2CConfig,
    algorithm_class=A2C,
    flow=lambda config: SynchronousSettings(),
    paper="Mnih et al. 2016, Asynchronous Methods for Deep RL (synchronous variant)",
    presets=PRESETS,
)
