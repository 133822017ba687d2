"""APPO: asynchronous PPO. IMPALA's data flow and V-trace targets, with PPO's clipped
surrogate (Schulman et al. 2017, eq. 7) on the V-trace policy-gradient advantages, for
several epochs of minibatches per batch of fragments.

    r_t = pi(a_t|x_t) / mu(a_t|x_t)      (mu: the worker's behaviour policy)
    L = -E[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)] + c_v * 0.5 * E[(v_t - V(x_t))^2] - c_e * H
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from distrl.algos.common import OptimizedAlgorithm, clipped_surrogate, minibatches, unroll
from distrl.algos.impala import IMPALAConfig, vtrace_targets
from distrl.algos.interface import AlgorithmSpec, Progress, StreamingSettings, Update
from distrl.algos.parallel import Shard, normalize
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class APPOConfig(IMPALAConfig):
    lr: float = option(5e-4, "learning rate (at the start, with lr_schedule linear)")
    optimizer: str = option("adam", "the optimizer", choices=("rmsprop", "adam"))
    optimizer_eps: float = option(1e-5, "the optimizer's epsilon")
    clip_coef: float = option(0.2, "the surrogate's clip range epsilon")
    epochs: int = option(2, "passes over each batch")
    num_minibatches: int = option(2, "minibatches per pass, each a set of whole fragment columns")
    normalize_advantages: bool = option(True, "normalise the V-trace advantages over each minibatch")
    max_grad_norm: float = option(0.5, "gradients are clipped to this global norm")

    section = "appo"


PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 8, "fragment_length": 50},
        "appo": {"anneal_env_steps": 50_000_000, "reward_clip": 1.0, "clip_coef": 0.1},
    },
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 32},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "appo": {"lr": 1e-3, "anneal_env_steps": 300_000, "ent_coef": 0.0, "epochs": 4, "num_minibatches": 2},
    },
}


def appo_loss(
    model: ActorCritic,
    batch: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    columns: torch.Tensor,
    config: APPOConfig,
    shard: Optional[Shard] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss on the minibatch of fragment ``columns`` (module docstring), against V-trace
    targets computed once for the whole batch. ``shard``: the columns are this learner's share
    of a minibatch, whose advantages are normalised over all the learners' shares together."""
    params, values = unroll(model, batch, columns)
    values = values.flatten()
    logp = model.log_prob(params, batch["actions"][:, columns]).flatten()
    advantages = targets["pg_advantages"][:, columns].flatten()
    if config.normalize_advantages:
        advantages = normalize(advantages, shard)
    ratio = (logp - batch["logp"][:, columns].flatten()).exp()
    policy_loss = clipped_surrogate(ratio, advantages, config.clip_coef)
    value_loss = 0.5 * ((targets["vs"][:, columns].flatten() - values) ** 2).mean()
    policy_entropy = model.entropy(params)
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * policy_entropy
    with torch.no_grad():
        clip_fraction = ((ratio - 1).abs() > config.clip_coef).float().mean()
    return loss, {
        "policy_loss": policy_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": policy_entropy.detach(),
        "clip_fraction": clip_fraction,
    }


class APPO(OptimizedAlgorithm):
    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        cfg = self.config
        lr = self.scheduled_lr(progress.env_steps)
        # V-trace targets once per batch, from the parameters the batch arrived to.
        with torch.no_grad():
            targets = vtrace_targets(self.model, batch, cfg)
        B = batch["rewards"].shape[1]
        totals: dict[str, float] = {}
        steps = 0
        for _ in range(cfg.epochs):
            # Minibatches of whole columns keep each step's time context; every column is used.
            for cols in minibatches(B, cfg.num_minibatches, batch["rewards"].device):
                # With several learners each takes its share of the minibatch (algos/parallel.py).
                mine, share = self.shard.take(len(cols))
                cols = cols if self.shard.alone else cols[mine]
                loss, stats = appo_loss(self.model, batch, targets, cols, cfg, self.shard)
                stats["grad_norm"] = torch.tensor(self.gradient_step(loss, weight=share))
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                steps += 1
        return Update(
            {**{k: v / max(steps, 1) for k, v in totals.items()}, "learning_rate": lr, "gradient_steps": steps}
        )


SPEC = AlgorithmSpec(
    name="appo",
    config_class=APPOConfig,
    algorithm_class=APPO,
    flow=lambda config: StreamingSettings(fragments_per_update=config.fragments_per_update),
    paper="IMPALA's V-trace with PPO's clipped surrogate (Espeholt et al. 2018; Schulman et al. 2017)",
    presets=PRESETS,
)
