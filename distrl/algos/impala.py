"""IMPALA: importance-weighted actor-learner (Espeholt et al. 2018). Workers sample
continuously with whatever weights they last pulled; the learner consumes fragments as
they arrive and corrects for the lag with V-trace targets (``returns.vtrace``).

    L = -E[rho_s (r_s + gamma v_{s+1} - V(x_s)) log pi(a_s|x_s)]
        + c_v * 0.5 * E[(v_s - V(x_s))^2] - c_e * H[pi(.|x_s)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from distrl.algos.a2c import linear_schedule
from distrl.algos.returns import vtrace


@dataclass
class IMPALAConfig:
    """Defaults are the paper's Atari settings (Table G.1): RMSProp lr 6e-4 (alpha 0.99,
    eps 0.01), entropy 0.01, baseline 0.5, gradient norm 40, rho = c = 1."""

    lr: float = 6e-4
    lr_schedule: str = field(default="linear", metadata={"choices": ("linear", "constant")})
    anneal_env_steps: Optional[int] = None
    optimizer: str = field(default="rmsprop", metadata={"choices": ("rmsprop", "adam")})
    rmsprop_alpha: float = 0.99
    optimizer_eps: float = 0.01
    gamma: float = 0.99
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 40.0
    clip_rho: float = 1.0
    clip_c: float = 1.0
    reward_clip: Optional[float] = None
    # Fragments per learner batch; 0 means one per worker.
    fragments_per_update: int = 0

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
    # Tuned here on CartPole-v1 with 2 workers (about 90k steps): Adam, 16-step fragments.
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 16},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "impala": {"lr": 2e-3, "optimizer": "adam", "optimizer_eps": 1e-5, "anneal_env_steps": 300_000,
                   "ent_coef": 0.0, "max_grad_norm": 0.5, "gamma": 0.99},
    },
}


def make_optimizer(config, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=config.rmsprop_alpha, eps=config.optimizer_eps)
    return torch.optim.Adam(parameters, lr=config.lr, eps=config.optimizer_eps)


def vtrace_targets(model: nn.Module, batch: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Runs the current model over a time-major batch and computes V-trace targets. A step cut
    by a time limit gets gamma * V(final obs) added to its reward and discount 0, so V-trace's
    ``discounts`` input carries both episode ends."""
    rewards = batch["rewards"]
    if config.reward_clip is not None:
        rewards = rewards.clamp(-config.reward_clip, config.reward_clip)
    T, B = rewards.shape
    logits, values = model(batch["obs"].flatten(0, 1))
    logits, values = logits.view(T, B, -1), values.view(T, B)
    with torch.no_grad():
        bootstrap = model(batch["last_obs"])[1]
    log_probs = logits.log_softmax(-1)
    target_logp = log_probs.gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
    cut = batch["truncated"] & ~batch["terminated"]
    rewards = rewards + torch.where(cut, config.gamma * batch["timeout_value"], torch.zeros_like(rewards))
    discounts = config.gamma * (~(batch["terminated"] | batch["truncated"])).to(rewards.dtype)
    vs, pg_advantages = vtrace(
        batch["logp"], target_logp.detach(), rewards, values.detach(), bootstrap, discounts,
        clip_rho=config.clip_rho, clip_c=config.clip_c,
    )
    return {"log_probs": log_probs, "target_logp": target_logp, "values": values, "vs": vs, "pg_advantages": pg_advantages}


class IMPALA:
    def __init__(self, config: IMPALAConfig, model: nn.Module, anneal_env_steps: Optional[int]):
        self.config = config
        self.model = model
        self.anneal_env_steps = anneal_env_steps
        self.optimizer = make_optimizer(config, model.parameters())

    def learn(self, batch: dict[str, torch.Tensor], env_steps: int) -> dict[str, float]:
        cfg = self.config
        lr = cfg.lr * linear_schedule(cfg, env_steps, self.anneal_env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out = vtrace_targets(self.model, batch, cfg)
        policy_loss = -(out["pg_advantages"] * out["target_logp"]).mean()
        value_loss = 0.5 * ((out["vs"] - out["values"]) ** 2).mean()
        entropy = -(out["log_probs"].exp() * out["log_probs"]).sum(-1).mean()
        loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            rho = (out["target_logp"] - batch["logp"]).exp()
        return {
            "policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy.item(),
            "grad_norm": float(grad_norm), "learning_rate": lr, "mean_rho": float(rho.mean()),
        }

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
