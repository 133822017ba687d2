"""Asynchronous advantage actor-critic (Mnih et al. 2016, Algorithm S3), without threads.

Each rollout worker computes the gradient of the actor-critic loss on its own fragment,
with its own copy of the model, and pushes it to the ParameterServer. The server applies it
at once with one shared optimizer (the paper's shared RMSProp statistics) and bumps the
weights' version; the worker pulls the new weights and goes on. Workers never wait for each
other, so their updates interleave in whatever order they arrive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from distrl.algos.a2c import A2CConfig, actor_critic_loss
from distrl.algos.common import OptimizedAlgorithm
from distrl.algos.interface import AlgorithmSpec, Gradients, GradientSettings, Progress, Update
from distrl.models.actor_critic import ActorCritic
from distrl.options import option


@dataclass
class A3CConfig(A2CConfig):
    """The paper's settings: shared RMSProp (alpha 0.99, eps 0.1), 5-step fragments (the
    paper's t_max), entropy 0.01, n-step returns."""

    lr: float = option(7e-4, "learning rate (at the start, with lr_schedule linear)")
    optimizer_eps: float = option(0.1, "the shared optimizer's epsilon")
    max_grad_norm: float = option(40.0, "each worker's gradient is clipped to this global norm")

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
        "a3c": {
            "lr": 2e-3,
            "optimizer": "rmsprop",
            "optimizer_eps": 1e-5,
            "anneal_env_steps": 300_000,
            "gae_lambda": 1.0,
            "ent_coef": 0.0,
            "normalize_advantages": True,
            "max_grad_norm": 0.5,
        },
    },
}


class A3C(OptimizedAlgorithm):
    """The learner's side: one optimizer shared by all workers' gradients (the paper's
    shared RMSProp statistics)."""

    @staticmethod
    def gradients(
        model: ActorCritic, batch: dict[str, torch.Tensor], config: A3CConfig
    ) -> tuple[Gradients, dict[str, float]]:
        """The worker's side: d loss / d theta on its own fragment, clipped to ``max_grad_norm``."""
        model.zero_grad(set_to_none=True)
        loss, stats = actor_critic_loss(model, batch, config)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        # None for a parameter the loss does not reach: the learner leaves it (and its
        # optimizer state) alone instead of applying a zero gradient.
        gradients = [None if p.grad is None else p.grad.detach().cpu().numpy() for p in model.parameters()]
        return gradients, {**{k: float(v) for k, v in stats.items()}, "grad_norm": float(grad_norm)}

    def apply_gradients(self, gradients: Gradients, progress: Progress) -> Update:
        lr = self.scheduled_lr(progress.env_steps)
        if not self.finite_step(all(gradient is None or np.isfinite(gradient).all() for gradient in gradients)):
            return Update({"learning_rate": lr})  # a worker's NaN or Inf gradient is skipped
        for parameter, gradient in zip(self.model.parameters(), gradients):
            # torch.tensor copies: arrays from the object store are read-only.
            parameter.grad = None if gradient is None else torch.tensor(gradient, device=parameter.device)
        self.optimizer.step()
        return Update({"learning_rate": lr})


SPEC = AlgorithmSpec(
    name="a3c",
    config_class=A3CConfig,
    algorithm_class=A3C,
    flow=lambda config: GradientSettings(),
    paper="Mnih et al. 2016, Asynchronous Methods for Deep Reinforcement Learning",
    presets=PRESETS,
    single_learner=(
        "A3C's learner applies each worker's gradient the moment it arrives, one worker at a time: there is "
        "no batch for several learners to share. Use a2c (the synchronous variant) for data-parallel learners"
    ),
)
