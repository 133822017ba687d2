"""Advantage actor-critic, synchronous (A2C): the batched, synchronous variant of A3C
(Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement Learning"; OpenAI
Baselines' A2C). One fragment from every worker, then one gradient step.

Loss (Mnih et al. 2016, Algorithm S3):

    L = -E[log pi(a_t|s_t) A_t] + c_v * 0.5 * E[(R_t - V(s_t))^2] - c_e * H[pi(.|s_t)]

with A_t = R_t - V(s_t) from n-step returns (``gae_lambda = 1``), or GAE(lambda) if < 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from distrl.algos.returns import gae


@dataclass
class A2CConfig:
    """Defaults are OpenAI Baselines' / Stable-Baselines3's A2C: RMSProp, lr 7e-4, 5-step fragments."""

    lr: float = 7e-4
    lr_schedule: str = field(default="linear", metadata={"choices": ("linear", "constant")})
    # Horizon of the linear decay when the run has no stop.env_steps (None: constant lr).
    anneal_env_steps: Optional[int] = None
    optimizer: str = field(default="rmsprop", metadata={"choices": ("rmsprop", "adam")})
    rmsprop_alpha: float = 0.99
    optimizer_eps: float = 1e-5
    gamma: float = 0.99
    # 1.0: plain n-step returns to the fragment's end, as in the paper; < 1: GAE.
    gae_lambda: float = 1.0
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    normalize_advantages: bool = False
    reward_clip: Optional[float] = None

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
        "a2c": {"lr": 2e-3, "anneal_env_steps": 300_000, "gae_lambda": 1.0, "ent_coef": 0.0,
                "normalize_advantages": True, "max_grad_norm": 0.5},
    },
}


def make_optimizer(config, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.optimizer_eps)
    return torch.optim.Adam(parameters, lr=config.lr, eps=config.optimizer_eps)


def linear_schedule(config, env_steps: int, horizon: Optional[int]) -> float:
    """The learning-rate multiplier: 1 falling linearly to 0 over ``horizon`` env steps."""
    if config.lr_schedule == "constant" or not horizon:
        return 1.0
    return max(0.0, 1.0 - env_steps / horizon)


def actor_critic_loss(model: nn.Module, batch: dict[str, torch.Tensor], config) -> tuple[torch.Tensor, dict]:
    """The A2C/A3C loss on a time-major batch ``[T, B]`` of one or more fragments."""
    rewards = batch["rewards"]
    if config.reward_clip is not None:
        rewards = rewards.clamp(-config.reward_clip, config.reward_clip)
    T, B = rewards.shape
    logits, values = model(batch["obs"].flatten(0, 1))
    values = values.view(T, B)
    with torch.no_grad():
        bootstrap = model(batch["last_obs"])[1]
        advantages, returns = gae(
            rewards, values.detach(), bootstrap, batch["terminated"], batch["truncated"],
            config.gamma, config.gae_lambda, timeout_values=batch["timeout_value"],
        )
        if config.normalize_advantages and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_probs = logits.log_softmax(-1)
    logp = log_probs.gather(-1, batch["actions"].flatten(0, 1).unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
    policy_loss = -(advantages.flatten() * logp).mean()
    value_loss = 0.5 * ((returns - values) ** 2).mean()
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy": entropy.detach()}
    return loss, stats


class A2C:
    def __init__(self, config: A2CConfig, model: nn.Module, anneal_env_steps: Optional[int]):
        self.config = config
        self.model = model
        self.anneal_env_steps = anneal_env_steps
        self.optimizer = make_optimizer(config, model.parameters())

    def learn(self, batch: dict[str, torch.Tensor], env_steps: int) -> dict[str, float]:
        lr = self.config.lr * linear_schedule(self.config, env_steps, self.anneal_env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, stats = actor_critic_loss(self.model, batch, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        return {**{k: float(v) for k, v in stats.items()}, "grad_norm": float(grad_norm), "learning_rate": lr}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
