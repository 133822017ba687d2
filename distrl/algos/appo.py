"""APPO: asynchronous PPO. IMPALA's data flow and V-trace targets, with PPO's clipped
surrogate (Schulman et al. 2017, eq. 7) on the V-trace policy-gradient advantages, for
several epochs of minibatches per batch of fragments.

    r_t = pi(a_t|x_t) / mu(a_t|x_t)      (mu: the worker's behaviour policy)
    L = -E[min(r_t A_t, clip(r_t, 1-eps, 1+eps) A_t)] + c_v * 0.5 * E[(v_t - V(x_t))^2] - c_e * H
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn

from distrl.algos.a2c import linear_schedule
from distrl.algos.impala import IMPALAConfig, make_optimizer, vtrace_targets


@dataclass
class APPOConfig(IMPALAConfig):
    lr: float = 5e-4
    optimizer: str = field(default="adam", metadata={"choices": ("rmsprop", "adam")})
    optimizer_eps: float = 1e-5
    clip_coef: float = 0.2
    epochs: int = 2
    num_minibatches: int = 2
    normalize_advantages: bool = True
    max_grad_norm: float = 0.5

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


class APPO:
    def __init__(self, config: APPOConfig, model: nn.Module, anneal_env_steps: Optional[int]):
        self.config = config
        self.model = model
        self.anneal_env_steps = anneal_env_steps
        self.optimizer = make_optimizer(config, model.parameters())

    def learn(self, batch: dict[str, torch.Tensor], env_steps: int) -> dict[str, float]:
        cfg = self.config
        lr = cfg.lr * linear_schedule(cfg, env_steps, self.anneal_env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # V-trace targets once per batch, from the parameters the batch arrived to.
        with torch.no_grad():
            targets = vtrace_targets(self.model, batch, cfg)
        T, B = batch["rewards"].shape
        totals: dict[str, float] = {}
        steps = 0
        for _ in range(cfg.epochs):
            columns = torch.randperm(B, device=batch["rewards"].device)
            # Minibatches of whole columns keep each step's time context; every column is used.
            for cols in torch.tensor_split(columns, min(cfg.num_minibatches, B)):
                logits, values = self.model(batch["obs"][:, cols].flatten(0, 1))
                log_probs = logits.log_softmax(-1)
                logp = log_probs.gather(-1, batch["actions"][:, cols].flatten().unsqueeze(-1)).squeeze(-1)
                advantages = targets["pg_advantages"][:, cols].flatten()
                if cfg.normalize_advantages and advantages.numel() > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                ratio = (logp - batch["logp"][:, cols].flatten()).exp()
                surrogate = torch.max(-advantages * ratio, -advantages * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef))
                policy_loss = surrogate.mean()
                value_loss = 0.5 * ((targets["vs"][:, cols].flatten() - values) ** 2).mean()
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    clip_fraction = ((ratio - 1).abs() > cfg.clip_coef).float().mean()
                for key, value in (("policy_loss", policy_loss), ("value_loss", value_loss), ("entropy", entropy),
                                   ("grad_norm", grad_norm), ("clip_fraction", clip_fraction)):
                    totals[key] = totals.get(key, 0.0) + value.item()
                steps += 1
        return {**{k: v / max(steps, 1) for k, v in totals.items()}, "learning_rate": lr, "gradient_steps": steps}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
