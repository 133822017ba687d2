"""Asynchronous advantage actor-critic (Mnih et al. 2016, Algorithm S3), without threads.

Each rollout worker computes the gradient of the actor-critic loss on its own fragment,
with its own copy of the model, and pushes it to the ParameterServer. The server applies it
at once with one shared optimizer (the paper's shared RMSProp statistics) and bumps the
weights' version; the worker pulls the new weights and goes on. Workers never wait for each
other, so their updates interleave in whatever order they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from distrl.algos.a2c import A2CConfig, actor_critic_loss, linear_schedule, make_optimizer


@dataclass
class A3CConfig(A2CConfig):
    """The paper's settings: shared RMSProp (alpha 0.99, eps 0.1), 5-step fragments (the
    paper's t_max), entropy 0.01, n-step returns."""

    lr: float = 7e-4
    optimizer_eps: float = 0.1
    max_grad_norm: float = 40.0

    section = "a3c"


PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 1, "fragment_length": 5},
        "a3c": {"anneal_env_steps": 10_000_000, "reward_clip": 1.0},
    },
    # Tuned here on CartPole-v1 with 2 workers (about 100k-130k steps over three seeds):
    # A2C's vector settings, applied per worker by the shared RMSProp. Adam and longer
    # fragments learned faster on some seeds and collapsed on others.
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 5},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "a3c": {"lr": 2e-3, "optimizer": "rmsprop", "optimizer_eps": 1e-5, "anneal_env_steps": 300_000,
                "gae_lambda": 1.0, "ent_coef": 0.0, "normalize_advantages": True, "max_grad_norm": 0.5},
    },
}


def compute_gradients(model: nn.Module, batch: dict[str, torch.Tensor], config: A3CConfig) -> tuple[list, dict]:
    """The worker's side: d loss / d theta on its own fragment, clipped to ``max_grad_norm``."""
    model.zero_grad(set_to_none=True)
    loss, stats = actor_critic_loss(model, batch, config)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    # None for a parameter the loss does not reach: the server leaves it (and its optimizer
    # state) alone instead of applying a zero gradient.
    gradients = [None if p.grad is None else p.grad.detach().cpu().numpy() for p in model.parameters()]
    return gradients, {**{k: float(v) for k, v in stats.items()}, "grad_norm": float(grad_norm)}


class A3C:
    """The server's side: one optimizer shared by all workers' gradients."""

    def __init__(self, config: A3CConfig, model: nn.Module, anneal_env_steps: Optional[int]):
        self.config = config
        self.model = model
        self.anneal_env_steps = anneal_env_steps
        self.optimizer = make_optimizer(config, model.parameters())

    def apply_gradients(self, gradients: list[Optional[np.ndarray]], env_steps: int) -> dict[str, float]:
        lr = self.config.lr * linear_schedule(self.config, env_steps, self.anneal_env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for parameter, gradient in zip(self.model.parameters(), gradients):
            # torch.tensor copies: arrays from the object store are read-only.
            parameter.grad = None if gradient is None else torch.tensor(gradient, device=parameter.device)
        self.optimizer.step()
        return {"learning_rate": lr}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
