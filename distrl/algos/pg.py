"""REINFORCE with a learned baseline (Williams 1992; Sutton & Barto 2018, section 13.4): the
Monte-Carlo policy gradient, with a state-value baseline that lowers its variance.

    G_t = sum_k gamma^k r_{t+k+1}                            (return to the episode's end)
    theta <- theta + alpha * (G_t - b(s_t)) * grad log pi(a_t|s_t)
    w     <- w + alpha_w * (G_t - b(s_t)) * grad b(s_t)

as one loss over a batch of fragments:

    L = -E[(G_t - b(s_t)) log pi(a_t|s_t)] + c_v * 0.5 * E[(G_t - b(s_t))^2] - c_e * H[pi]

Fragments have a fixed length, so an episode may still run when its fragment ends; its
return is then completed with the baseline's value of the last observation (and a time-limit
cut with V(final obs)). With ``runtime.fragment_length`` at least the episode length, most
returns are whole episodes, as in the book.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from distrl.algos.common import OptimizedAlgorithm, clip_rewards, unroll_with_bootstrap
from distrl.algos.interface import AlgorithmSpec, Progress, SynchronousSettings, Update
from distrl.algos.parallel import Shard, normalize
from distrl.algos.returns import discounted_returns
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class PGConfig:
    lr: float = option(1e-3, "learning rate (at the start, with lr_schedule linear)")
    lr_schedule: str = option(
        "linear",
        "linear: the lr falls to 0 over stop.env_steps (or anneal_env_steps); constant: it stays",
        choices=("linear", "constant"),
    )
    anneal_env_steps: Optional[int] = option(
        None, "horizon of the linear decay for runs without stop.env_steps (null: constant lr)"
    )
    optimizer: str = option("adam", "the optimizer", choices=("rmsprop", "adam"))
    optimizer_eps: float = option(1e-8, "the optimizer's epsilon")
    rmsprop_alpha: float = option(0.99, "RMSProp's smoothing constant")
    gamma: float = option(0.99, "discount factor")
    vf_coef: float = option(0.5, "weight of the baseline's loss")
    ent_coef: float = option(0.0, "weight of the entropy bonus")
    max_grad_norm: float = option(0.5, "gradients are clipped to this global norm")
    normalize_advantages: bool = option(True, "normalise G_t - b(s_t) over each batch")
    reward_clip: Optional[float] = option(None, "the loss sees rewards clipped to [-r, r] (null: raw rewards)")
    reward_scale: float = option(1.0, "the loss sees rewards times this, then reward_clip (reported returns stay raw)")

    section = "pg"

    def __post_init__(self):
        for key in ("lr", "max_grad_norm"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key 'pg.{key}' must be > 0, got {getattr(self, key)}.")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"Config key 'pg.gamma' must be in [0, 1], got {self.gamma}.")


# "vector": long fragments (CartPole's episodes reach 500 steps) so that returns are mostly
# whole episodes; Adam with the lr annealed over the budget.
PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 8, "fragment_length": 128},
        "pg": {"lr": 2.5e-4, "anneal_env_steps": 10_000_000, "reward_clip": 1.0, "ent_coef": 0.01},
    },
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 256},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "pg": {"lr": 3e-3, "anneal_env_steps": 300_000},
    },
}


def reinforce_loss(
    model: ActorCritic, batch: dict[str, torch.Tensor], config: PGConfig, shard: Optional[Shard] = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of the module docstring on a time-major batch ``[T, B]`` (with ``shard``: on
    this learner's columns of it, advantages normalised over all learners')."""
    rewards = clip_rewards(batch["rewards"], config.reward_clip, config.reward_scale)
    params, baseline, bootstrap = unroll_with_bootstrap(model, batch)
    with torch.no_grad():
        returns = discounted_returns(
            rewards,
            bootstrap,
            batch["terminated"],
            batch["truncated"],
            config.gamma,
            timeout_values=batch["timeout_value"],
        )
        advantages = returns - baseline
        if config.normalize_advantages:
            advantages = normalize(advantages, shard)
    policy_loss = -(advantages.flatten() * model.log_prob(params, batch["actions"]).flatten()).mean()
    baseline_loss = 0.5 * ((returns - baseline) ** 2).mean()
    policy_entropy = model.entropy(params)
    loss = policy_loss + config.vf_coef * baseline_loss - config.ent_coef * policy_entropy
    return loss, {
        "policy_loss": policy_loss.detach(),
        "value_loss": baseline_loss.detach(),
        "entropy": policy_entropy.detach(),
    }


class PG(OptimizedAlgorithm):
    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        lr = self.scheduled_lr(progress.env_steps)
        batch, share = self.shard.columns(batch)
        loss, stats = reinforce_loss(self.model, batch, self.config, self.shard)
        grad_norm = self.gradient_step(loss, weight=share)
        return Update({**{k: float(v) for k, v in stats.items()}, "grad_norm": grad_norm, "learning_rate": lr})


SPEC = AlgorithmSpec(
    name="pg",
    config_class=PGConfig,
    algorithm_class=PG,
    flow=lambda config: SynchronousSettings(),
    paper="Williams 1992; Sutton & Barto 2018, section 13.4: REINFORCE with baseline",
    presets=PRESETS,
)
