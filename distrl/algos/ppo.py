"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization
Algorithms"), clipped-surrogate variant, for every action space ``models/heads.py`` covers.

Data flow (docs/design.md, "synchronous"): rollout workers sample fixed-length fragments with the newest policy,
the learner stacks one fragment per worker into a ``[T, B]`` batch and calls ``PPO.learn``.
With ``async_sampling`` the workers sample the next batch while the learner updates, so a
fragment is one version old (the first excepted); the clipped ratio uses the behaviour
log-probabilities the worker recorded, which keeps that correct. Its values are a version old
too: ``fresh_values`` computes the advantages with the learner's value function instead, which
has learned from one batch more (on CartPole, 20 seeds: 54-76k env steps to 475 with it,
55-102k without; BENCHMARKS.md, 2026-12-06 (night, later)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from distrl.algos.common import (
    OptimizedAlgorithm,
    clip_rewards,
    clipped_surrogate,
    make_optimizer,
    minibatches,
    unroll,
    unroll_with_bootstrap,
)
from distrl.algos.interface import AlgorithmSpec, Progress, SynchronousSettings, Update
from distrl.algos.parallel import Shard, normalize
from distrl.algos.returns import gae
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class PPOConfig:
    """PPO hyperparameters. Defaults are CleanRL's ``ppo.py`` (classic control); the
    ``PRESETS`` below replace them for pixel and vector environments."""

    lr: float = option(2.5e-4, "Adam learning rate (at the start, with lr_schedule linear)")
    lr_schedule: str = option(
        "linear",
        "linear: the lr (and the clip range, with clip_decay) fall to 0 over stop.env_steps, or over "
        "anneal_env_steps for runs without one; constant: they stay",
        choices=("linear", "constant"),
    )
    anneal_env_steps: Optional[int] = option(
        None, "horizon of the linear decay for runs without stop.env_steps (null: constant lr)"
    )
    adam_eps: float = option(1e-5, "Adam's epsilon")
    gamma: float = option(0.99, "discount factor")
    gae_lambda: float = option(0.95, "GAE's lambda (Schulman et al. 2016)")
    epochs: int = option(4, "passes over each batch")
    num_minibatches: int = option(4, "minibatches per pass")
    clip_coef: float = option(0.2, "the surrogate's clip range epsilon")
    clip_decay: bool = option(False, "anneal the clip range with the learning rate")
    clip_value_loss: bool = option(True, "clip the value loss around the behaviour values, as the paper's code does")
    vf_coef: float = option(0.5, "weight of the value loss")
    ent_coef: float = option(0.01, "weight of the entropy bonus")
    max_grad_norm: float = option(0.5, "gradients are clipped to this global norm")
    normalize_advantages: bool = option(True, "normalise advantages over each minibatch")
    target_kl: Optional[float] = option(
        None, "stop an update's epochs once the approximate KL passes this (null: never)"
    )
    reward_clip: Optional[float] = option(None, "the loss sees rewards clipped to [-r, r] (null: raw rewards)")
    reward_scale: float = option(1.0, "the loss sees rewards times this, then reward_clip (reported returns stay raw)")
    async_sampling: bool = option(False, "workers sample the next batch during the update (policy lag <= 1)")
    fresh_values: bool = option(
        False,
        "advantages from the learner's value function, as it is when the update starts, instead of the "
        "values the workers recorded (a version old with async_sampling)",
    )

    def __post_init__(self):
        for key in ("lr", "epochs", "num_minibatches", "clip_coef", "max_grad_norm"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key 'ppo.{key}' must be > 0, got {getattr(self, key)}.")
        for key in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"Config key 'ppo.{key}' must be in [0, 1], got {getattr(self, key)}.")


# Family presets, applied under the user's config. "pixels": CleanRL ppo_atari.py, i.e. the
# PPO paper's Atari settings (Table 5): 8 envs x 128 steps, 4 epochs of 4 minibatches,
# clip 0.1, lr 2.5e-4 annealed. "vector": the tuned CartPole-v1 settings of rl-baselines3-zoo
# (8 envs x 32 steps, 20 epochs on the whole batch, gamma 0.98, lambda 0.8, lr 1e-3 and clip 0.2
# annealed, no entropy bonus, no clipping of the value loss: SB3 clips it only when given a
# clip_range_vf), which solve CartPole in ~100k steps rather than ~400k. A vector env steps in
# microseconds and its small network's update is what bounds a run, so the workers sample the
# next batch during the update (policy lag 1, which the clipped ratio on the behaviour
# log-probabilities keeps correct, with the advantages from the learner's own value function:
# fresh_values), and one worker with the 8 copies keeps up with the learner
# where a second would only add a process to start: on CartPole, 2 cores, 1.5x the env steps/s
# of 2 synchronous workers x 4 copies at the same steps to 475 (BENCHMARKS.md, issue 33).
PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 8, "fragment_length": 128},
        "model": {"kind": "cnn"},
        "ppo": {
            "lr": 2.5e-4,
            "anneal_env_steps": 10_000_000,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "epochs": 4,
            "num_minibatches": 4,
            "clip_coef": 0.1,
            "ent_coef": 0.01,
            "vf_coef": 0.5,
            "reward_clip": 1.0,
        },
    },
    "vector": {
        "runtime": {"num_workers": 1, "envs_per_worker": 8, "fragment_length": 32},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "ppo": {
            "lr": 1e-3,
            "anneal_env_steps": 150_000,
            "gamma": 0.98,
            "gae_lambda": 0.8,
            "epochs": 20,
            "num_minibatches": 1,
            "clip_coef": 0.2,
            "clip_decay": True,
            "clip_value_loss": False,
            "ent_coef": 0.0,
            "async_sampling": True,
            "fresh_values": True,
        },
    },
}


def ppo_loss(
    model: ActorCritic,
    obs: Optional[torch.Tensor],
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    clip_coef: float,
    config: PPOConfig,
    outputs: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    shard: Optional[Shard] = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO objective on one flat minibatch, as a loss to minimise (paper eq. 9):

        L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + c1 * L_V - c2 * H[pi]

    with r = pi(a|s) / pi_old(a|s) computed from the behaviour log-probabilities. ``outputs``:
    the model's ``(params, values)`` on the minibatch where the caller has computed them (a
    recurrent model's unrolled sequences), instead of ``model(obs)``. ``shard``: the
    minibatch is this learner's share of one, whose advantages are normalised over all the
    learners' shares together (algos/parallel.py).
    """
    params, values = outputs if outputs is not None else model(obs)
    logp = model.log_prob(params, actions)
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()

    if config.normalize_advantages:
        advantages = normalize(advantages, shard)
    policy_loss = clipped_surrogate(ratio, advantages, clip_coef)

    # Value loss, optionally clipped around the behaviour values as in the paper's code.
    if config.clip_value_loss:
        clipped_values = old_values + (values - old_values).clamp(-clip_coef, clip_coef)
        value_loss = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((values - returns) ** 2).mean()

    loss = policy_loss + config.vf_coef * value_loss
    if config.ent_coef:
        mean_entropy = model.entropy(params)
        loss = loss - config.ent_coef * mean_entropy
    else:  # reported only: out of the graph, whose backward it would add to for nothing
        with torch.no_grad():
            mean_entropy = model.entropy(params)

    with torch.no_grad():
        # Unbiased, non-negative KL estimator (Schulman, "Approximating KL divergence").
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_fraction = ((ratio - 1).abs() > clip_coef).float().mean()
    stats = {
        "policy_loss": policy_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": mean_entropy.detach(),
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }
    return loss, stats


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect value function, 0 a constant."""
    var_target = target.var()
    if var_target == 0:
        return float("nan")
    return float(1 - (target - predicted).var() / var_target)


class PPO(OptimizedAlgorithm):
    """The learner side of PPO: owns the optimizer, turns a batch into several epochs of
    minibatch updates."""

    def __init__(self, config: PPOConfig, model: nn.Module, budget_env_steps: Optional[int]):
        optimizer = make_optimizer("adam", model.parameters(), config.lr, config.adam_eps)
        super().__init__(config, model, budget_env_steps, optimizer)

    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        cfg = self.config
        lr = self.scheduled_lr(progress.env_steps)
        clip_coef = cfg.clip_coef * self.remaining(progress.env_steps) if cfg.clip_decay else cfg.clip_coef

        rewards = clip_rewards(batch["rewards"], cfg.reward_clip, cfg.reward_scale)
        baseline, bootstrap = batch["values"], batch["bootstrap_value"]
        if cfg.fresh_values:
            with torch.no_grad():
                _, baseline, bootstrap = unroll_with_bootstrap(self.model, batch)
        with torch.no_grad():
            advantages, returns = gae(
                rewards,
                baseline,
                bootstrap,
                batch["terminated"],
                batch["truncated"],
                cfg.gamma,
                cfg.gae_lambda,
                timeout_values=batch["timeout_value"],
            )

        # Flatten time and env axes: PPO's minibatches are i.i.d. samples of transitions.
        flat = {
            "obs": batch["obs"].flatten(0, 1),
            "actions": batch["actions"].flatten(0, 1),
            "old_logp": batch["logp"].flatten(0, 1),
            "old_values": baseline.flatten(0, 1),
            "advantages": advantages.flatten(0, 1),
            "returns": returns.flatten(0, 1),
        }
        n = flat["actions"].shape[0]

        totals: dict[str, torch.Tensor] = {}
        num_steps = 0
        stop_early = False
        # A recurrent model's minibatches are whole sequences: sets of env columns, each unrolled
        # from the state its worker recorded, so that no gradient is cut inside a fragment.
        recurrent = getattr(self.model, "recurrent", False)
        if recurrent:
            n = advantages.shape[1]
        # One minibatch is the whole batch, whose mean loss no order changes: it is used as it
        # is, without the shuffle and the six copies that indexing it would make every epoch.
        whole = cfg.num_minibatches == 1 and not recurrent
        # With several learners each takes its share of every minibatch (algos/parallel.py).
        alone = self.shard.alone
        for _ in range(cfg.epochs):
            for index in (None,) if whole else minibatches(n, cfg.num_minibatches, flat["actions"].device):
                rows: Optional[torch.Tensor | slice] = index
                share = 1.0
                if not alone:
                    mine, share = self.shard.take(n if index is None else len(index))
                    rows = mine if index is None else index[mine]
                if recurrent:
                    params, values = unroll(self.model, batch, rows)
                    columns = {
                        "actions": batch["actions"],
                        "old_logp": batch["logp"],
                        "old_values": baseline,
                        "advantages": advantages,
                        "returns": returns,
                    }
                    part = {key: value[:, rows].flatten(0, 1) for key, value in columns.items()}
                    outputs: Optional[tuple[torch.Tensor, torch.Tensor]] = (params.flatten(0, 1), values.flatten())
                else:
                    part = {key: value if rows is None else value[rows] for key, value in flat.items()}
                    outputs = None
                loss, stats = ppo_loss(
                    self.model,
                    part.get("obs"),
                    part["actions"],
                    part["old_logp"],
                    part["old_values"],
                    part["advantages"],
                    part["returns"],
                    clip_coef,
                    cfg,
                    outputs=outputs,
                    shard=self.shard,
                )
                stats["grad_norm"] = self.gradient_step(loss, sync=False, weight=share)
                # Summed as tensors: a float() per minibatch costs more than a small model's step.
                for key, value in stats.items():
                    totals[key] = totals[key] + value if key in totals else value
                num_steps += 1
            # Every learner must stop at the same step: the KL is that of the whole minibatch.
            if cfg.target_kl is not None and float(self.shard.weighted_sum(stats["approx_kl"], share)) > cfg.target_kl:
                stop_early = True
                break

        result = {key: float(value) / max(num_steps, 1) for key, value in totals.items()}
        result.update(
            learning_rate=lr,
            clip_coef=clip_coef,
            gradient_steps=num_steps,
            early_stopped=float(stop_early),
            explained_variance=explained_variance(flat["old_values"], flat["returns"]),
        )
        return Update(result)


SPEC = AlgorithmSpec(
    name="ppo",
    config_class=PPOConfig,
    algorithm_class=PPO,
    flow=lambda config: SynchronousSettings(overlap_sampling=config.async_sampling),
    paper="Schulman et al. 2017, Proximal Policy Optimization Algorithms",
    presets=PRESETS,
)
