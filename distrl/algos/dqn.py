"""DQN with the Rainbow-era improvements that matter most, distributed like Ape-X (Horgan
et al. 2018): many workers explore with a ladder of epsilons and push n-step transitions
with initial priorities to replay; the learner samples by priority, updates, and sends the
new priorities back.

- Double DQN (van Hasselt et al. 2016): the online network picks a*, the target network values it.
- Dueling heads (Wang et al. 2016): ``model.dueling``.
- n-step returns (Sutton 1988; Hessel et al. 2018): ``returns.nstep_targets``.
- Huber loss and a target network, copied every ``target_update_interval`` gradient steps,
  or moved by Polyak averaging with ``tau < 1`` (Mnih et al. 2015; Lillicrap et al. 2016).
- Prioritized replay with importance-sampling weights (Schaul et al. 2016): P(i) = p_i^alpha
  / sum_k p_k^alpha, w_i = (N P(i))^-beta / max_j w_j, beta annealed to 1.

    target = sum_{j<n} gamma^j r_{t+j} + gamma^n Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))
    L = E[w_i * huber(target - Q(s_t, a_t))]
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from distrl.algos.a2c import linear_schedule
from distrl.algos.returns import nstep_targets


@dataclass
class DQNConfig:
    """Defaults are Ape-X's and Rainbow's Atari settings (Horgan et al. 2018; Hessel et al.
    2018): Adam lr 6.25e-5 (eps 1.5e-4), 3-step returns, batch 32, prioritized replay with
    alpha 0.6 and beta 0.4 -> 1, epsilon ladder 0.4^(1 + 7 i / (N - 1))."""

    lr: float = 6.25e-5
    # "linear": lr falls linearly to 0 over the run's env-step budget (stop.env_steps), or
    # over anneal_env_steps when the run has none (None then: constant); "constant" (Ape-X).
    lr_schedule: str = field(default="constant", metadata={"choices": ("linear", "constant")})
    anneal_env_steps: Optional[int] = None
    adam_eps: float = 1.5e-4
    gamma: float = 0.99
    n_step: int = 3
    batch_size: int = 32
    double: bool = True
    huber_delta: float = 1.0
    max_grad_norm: float = 10.0
    # Gradient steps between hard target copies; with tau < 1 the target moves by Polyak
    # averaging after every step instead.
    target_update_interval: int = 2500
    tau: float = 1.0
    replay_capacity: int = 1_000_000
    replay_shards: int = 1
    # Transitions to collect before the first update.
    learning_starts: int = 50_000
    # Sampled transitions per collected env step (DQN: batch 32 every 4 steps = 8).
    replay_ratio: float = 8.0
    prioritized: bool = True
    priority_alpha: float = 0.6
    priority_beta: float = 0.4
    # beta rises linearly to 1 over this many env steps (None: stays at priority_beta).
    priority_beta_anneal_env_steps: Optional[int] = None
    priority_eps: float = 1e-6
    # Ape-X's ladder over all env copies: epsilon_i = epsilon_base^(1 + epsilon_alpha i / (N - 1)).
    epsilon_base: float = 0.4
    epsilon_alpha: float = 7.0
    # With > 0, every env copy starts fully random and anneals to its ladder value over this
    # many env steps; 0 (Ape-X) uses the ladder from the start.
    epsilon_anneal_env_steps: int = 0
    reward_clip: Optional[float] = None

    section = "dqn"

    def __post_init__(self):
        for key in ("lr", "batch_size", "n_step", "replay_capacity", "replay_shards", "target_update_interval", "replay_ratio"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key 'dqn.{key}' must be > 0, got {getattr(self, key)}.")
        for key in ("gamma", "tau", "epsilon_base", "priority_beta"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"Config key 'dqn.{key}' must be in [0, 1], got {getattr(self, key)}.")


PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 50},
        "dqn": {"reward_clip": 1.0, "priority_beta_anneal_env_steps": 10_000_000},
    },
    # CartPole, tuned here with 2 workers (solves it in about 80k steps): in the spirit of
    # rl-baselines3-zoo's DQN (batch 64, a high replay ratio) with a smaller net, 3-step
    # returns, and Ape-X's ladder made greedier for 8 env copies. Three choices keep it from
    # climbing to ~450 and then collapsing, which hard target copies every 100 steps, a
    # constant lr and a 100k replay did in about one run in three: a Polyak-averaged target
    # (tau 0.005, a time constant of 200 gradient steps), an lr annealed to 0 over the budget,
    # and a replay that keeps the early, failing episodes (1M > any CartPole budget).
    "vector": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 16},
        "model": {"kind": "mlp", "hidden_sizes": [64, 64], "activation": "relu"},
        "dqn": {"lr": 1e-3, "lr_schedule": "linear", "anneal_env_steps": 200_000, "adam_eps": 1e-8,
                "batch_size": 64, "n_step": 3, "tau": 0.005,
                "replay_capacity": 1_000_000, "learning_starts": 1000, "replay_ratio": 32.0,
                "epsilon_base": 0.1, "epsilon_alpha": 7.0, "epsilon_anneal_env_steps": 10_000,
                "priority_beta_anneal_env_steps": 100_000, "max_grad_norm": 10.0},
    },
}


def epsilons(config: DQNConfig, worker_index: int, num_workers: int, envs_per_worker: int, env_steps: int) -> np.ndarray:
    """Each env copy's exploration rate: Ape-X's ladder over all copies (the first copy
    explores most), reached by a linear anneal from 1 over ``epsilon_anneal_env_steps``."""
    total = max(num_workers * envs_per_worker, 1)
    index = worker_index * envs_per_worker + np.arange(envs_per_worker)
    exponent = 1 + config.epsilon_alpha * index / max(total - 1, 1)
    ladder = config.epsilon_base ** exponent
    if config.epsilon_anneal_env_steps and env_steps < config.epsilon_anneal_env_steps:
        progress = env_steps / config.epsilon_anneal_env_steps
        ladder = 1.0 + (ladder - 1.0) * progress
    return ladder.astype(np.float32)


def behaviour(config, worker_index: int, num_workers: int, envs_per_worker: int, env_steps: int) -> dict:
    return {"epsilon": epsilons(config, worker_index, num_workers, envs_per_worker, env_steps)}


def initial_priorities(fragment: dict[str, np.ndarray], config: DQNConfig) -> dict[str, np.ndarray]:
    """Ape-X's actor-side priorities: |n-step TD error| under the worker's own network, with
    the window cut at the fragment's end (bootstrapping from max_a Q there)."""
    rewards = torch.as_tensor(fragment["rewards"], dtype=torch.float64)
    if config.reward_clip is not None:
        rewards = rewards.clamp(-config.reward_clip, config.reward_clip)
    T, K = rewards.shape
    n = config.n_step
    terminated = torch.as_tensor(fragment["terminated"])
    truncated = torch.as_tensor(fragment["truncated"]).clone()
    cut_values = torch.as_tensor(fragment["timeout_value"], dtype=torch.float64).clone()
    # The fragment's end cuts every window that reaches it: bootstrap from the last obs.
    open_end = ~terminated[-1] & ~truncated[-1]
    truncated[-1] |= open_end
    cut_values[-1] = torch.where(open_end, torch.as_tensor(fragment["bootstrap_value"], dtype=torch.float64), cut_values[-1])
    # Windows [t, t + n) clipped at T - 1, flattened to [T * K, n].
    index = (torch.arange(T).unsqueeze(1) + torch.arange(n).unsqueeze(0)).clamp(max=T - 1)
    window = lambda a: a[index].permute(0, 2, 1).reshape(T * K, n)  # noqa: E731
    returns, discount, steps = nstep_targets(window(rewards), window(terminated), window(truncated), config.gamma)
    end = (torch.arange(T).repeat_interleave(K) + steps - 1).clamp(max=T - 1)
    column = torch.arange(K).repeat(T)
    values = torch.as_tensor(fragment["values"], dtype=torch.float64)
    ended_by_cut = truncated[end, column] & ~terminated[end, column]
    after = (end + 1).clamp(max=T - 1)
    bootstrap = torch.where(ended_by_cut, cut_values[end, column], values[after, column])
    targets = returns + discount * bootstrap
    q_taken = torch.as_tensor(fragment["q_taken"], dtype=torch.float64).reshape(T * K)
    priorities = (targets - q_taken).abs() + config.priority_eps
    return {"priorities": priorities.reshape(T, K).numpy().astype(np.float32)}


class DQN:
    def __init__(self, config: DQNConfig, model: nn.Module, anneal_env_steps: Optional[int]):
        self.config = config
        self.model = model
        self.target = copy.deepcopy(model).requires_grad_(False)
        # Loading a state dict copies into these same tensors, so the lists stay valid.
        self.polyak_pairs = (list(self.target.parameters()), list(model.parameters()))
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
        self.anneal_env_steps = anneal_env_steps
        self.gradient_steps = 0

    def priority_beta(self, env_steps: int) -> float:
        cfg = self.config
        if not cfg.priority_beta_anneal_env_steps:
            return cfg.priority_beta
        return min(1.0, cfg.priority_beta + (1 - cfg.priority_beta) * env_steps / cfg.priority_beta_anneal_env_steps)

    def learn(self, batch: dict[str, torch.Tensor], env_steps: int) -> tuple[dict[str, float], np.ndarray]:
        """One gradient step on a replay batch; returns the statistics and the new priorities."""
        cfg = self.config
        lr = cfg.lr * linear_schedule(cfg, env_steps, self.anneal_env_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        q = self.model(batch["obs"]).gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_target = self.target(batch["next_obs"])
            if cfg.double:
                best = self.model(batch["next_obs"]).argmax(-1, keepdim=True)
                next_value = next_target.gather(-1, best).squeeze(-1)
            else:
                next_value = next_target.max(-1).values
            # A window cut by a time limit bootstraps from the value recorded at the cut.
            next_value = torch.where(batch["cut"], batch["cut_value"], next_value)
            target = batch["returns"] + batch["discount"] * next_value
        td_error = target - q
        loss = (batch["weights"] * F.huber_loss(q, target, reduction="none", delta=cfg.huber_delta)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.gradient_steps += 1
        if cfg.tau < 1.0:
            with torch.no_grad():  # one fused call: this runs after every gradient step
                torch._foreach_lerp_(*self.polyak_pairs, cfg.tau)
        elif self.gradient_steps % cfg.target_update_interval == 0:
            self.target.load_state_dict(self.model.state_dict())
        stats = {"learning_rate": lr, "loss": loss.item(), "q_mean": q.mean().item(), "td_error_abs": td_error.abs().mean().item(),
                 "grad_norm": float(grad_norm)}
        return stats, (td_error.detach().abs() + cfg.priority_eps).cpu().numpy()

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "target": self.target.state_dict(),
                "gradient_steps": self.gradient_steps}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.target.load_state_dict(state["target"])
        self.gradient_steps = int(state["gradient_steps"])
