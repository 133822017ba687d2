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
import functools
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from distrl.algos.common import OptimizedAlgorithm, clip_rewards, make_optimizer
from distrl.algos.interface import AlgorithmSpec, Behaviour, Progress, ReplaySettings, Update
from distrl.algos.returns import nstep_targets
from distrl.options import option

# Ape-X's ladder was made for hundreds of actors (360 in the paper): over N copies, about half
# explore at less than base^4.5 (0.016 with the default base 0.4). With one worker of 4
# copies and base 0.1 (the tutorials' Breakout config until issue 31), three copies acted
# almost greedily (epsilon 5e-4, 2e-6, 1e-8) once the anneal ended, and the run had one
# exploring copy. From this many copies on, the default ladder has 18 copies exploring at
# 1% or more.
LADDER_FROM_COPIES = 32


@dataclass
class DQNConfig:
    """Defaults are Ape-X's and Rainbow's Atari settings (Horgan et al. 2018; Hessel et al.
    2018): Adam lr 6.25e-5 (eps 1.5e-4), 3-step returns, batch 32, prioritized replay with
    alpha 0.6 and beta 0.4 -> 1, epsilon ladder 0.4^(1 + 7 i / (N - 1))."""

    lr: float = option(6.25e-5, "Adam learning rate")
    lr_schedule: str = option(
        "constant",
        "linear: the lr falls to 0 over stop.env_steps (or anneal_env_steps); constant (Ape-X): it stays",
        choices=("linear", "constant"),
    )
    anneal_env_steps: Optional[int] = option(
        None, "horizon of the linear decay for runs without stop.env_steps (null: constant lr)"
    )
    adam_eps: float = option(1.5e-4, "Adam's epsilon")
    gamma: float = option(0.99, "discount factor")
    n_step: int = option(3, "steps of real rewards in each target before bootstrapping")
    batch_size: int = option(32, "transitions per gradient step")
    double: bool = option(True, "double DQN: the online network picks the next action, the target network values it")
    huber_delta: float = option(1.0, "the Huber loss's delta")
    max_grad_norm: float = option(10.0, "gradients are clipped to this global norm")
    target_update_interval: int = option(2500, "gradient steps between hard target copies (with tau 1)")
    tau: float = option(1.0, "< 1: the target network moves by Polyak averaging after every step instead")
    replay_capacity: int = option(1_000_000, "transitions kept over all shards")
    replay_shards: int = option(1, "replay actors the transitions are spread over")
    learning_starts: int = option(50_000, "env steps to collect before the first update")
    replay_ratio: float = option(8.0, "sampled transitions per collected env step (DQN's batch 32 every 4 steps = 8)")
    prioritized: bool = option(True, "prioritized replay (Schaul et al. 2016); false: uniform")
    priority_alpha: float = option(0.6, "priority exponent: P(i) = p_i^alpha / sum p^alpha")
    priority_beta: float = option(0.4, "importance-sampling exponent at the start")
    priority_beta_anneal_env_steps: Optional[int] = option(
        None, "beta rises linearly to 1 over this many env steps (null: stays)"
    )
    priority_eps: float = option(1e-6, "added to |TD error| so no transition gets priority 0")
    exploration: str = option(
        "auto",
        "linear: every env copy's epsilon falls from 1 to epsilon_final over epsilon_anneal_env_steps (DQN's "
        "and CleanRL's schedule, for a few copies); ladder: Ape-X's fixed epsilon per copy (for many actors); "
        f"auto: linear below {LADDER_FROM_COPIES} env copies in all, the ladder from there (and with "
        "runtime.num_workers=auto)",
        choices=("auto", "linear", "ladder"),
    )
    epsilon_final: float = option(0.01, "linear: the epsilon every copy keeps after epsilon_anneal_env_steps")
    epsilon_base: float = option(0.4, "Ape-X's ladder over all env copies: epsilon_i = base^(1 + alpha i / (N - 1))")
    epsilon_alpha: float = option(7.0, "the ladder's alpha (see epsilon_base)")
    epsilon_anneal_env_steps: int = option(
        0,
        "linear: the anneal's length (0: epsilon_final from the start); ladder: > 0 starts every copy fully "
        "random and anneals it to its rung over this many env steps",
    )
    reward_clip: Optional[float] = option(None, "the loss sees rewards clipped to [-r, r] (null: raw rewards)")

    section = "dqn"

    def __post_init__(self):
        for key in (
            "lr",
            "batch_size",
            "n_step",
            "replay_capacity",
            "replay_shards",
            "target_update_interval",
            "replay_ratio",
        ):
            if getattr(self, key) <= 0:
                raise ValueError(f"Config key 'dqn.{key}' must be > 0, got {getattr(self, key)}.")
        for key in ("gamma", "tau", "epsilon_base", "epsilon_final", "priority_beta"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"Config key 'dqn.{key}' must be in [0, 1], got {getattr(self, key)}.")


PRESETS = {
    "pixels": {
        "runtime": {"envs_per_worker": 4, "fragment_length": 50},
        # 250k env steps (1M frames) of epsilon anneal: Dopamine's DQN; it applies to the
        # linear schedule and to the ladder's start alike.
        "dqn": {
            "reward_clip": 1.0,
            "priority_beta_anneal_env_steps": 10_000_000,
            "epsilon_anneal_env_steps": 250_000,
        },
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
        "dqn": {
            "lr": 1e-3,
            "lr_schedule": "linear",
            "anneal_env_steps": 200_000,
            "adam_eps": 1e-8,
            "batch_size": 64,
            "n_step": 3,
            "tau": 0.005,
            "replay_capacity": 1_000_000,
            "learning_starts": 1000,
            "replay_ratio": 32.0,
            "exploration": "ladder",
            "epsilon_base": 0.1,
            "epsilon_alpha": 7.0,
            "epsilon_anneal_env_steps": 10_000,
            "priority_beta_anneal_env_steps": 100_000,
            "max_grad_norm": 10.0,
        },
    },
}


def settle_exploration(config: DQNConfig, run: Any) -> None:
    """``exploration: auto`` -> linear or ladder by the number of env copies (see
    ``LADDER_FROM_COPIES``); elastic workers (``num_workers: auto``) are a cluster's worth."""
    if config.exploration != "auto":
        return
    workers = run.runtime.num_workers
    copies = None if workers == "auto" else workers * run.runtime.envs_per_worker
    config.exploration = "ladder" if copies is None or copies >= LADDER_FROM_COPIES else "linear"


def epsilons(config: DQNConfig, at: Behaviour) -> np.ndarray:
    """Each env copy's exploration rate. Linear: one epsilon for all copies, from 1 down to
    ``epsilon_final`` over ``epsilon_anneal_env_steps`` (Mnih et al. 2015). Ladder: Ape-X's
    fixed rate per copy (the first copy explores most), reached by a linear anneal from 1
    over ``epsilon_anneal_env_steps``."""
    if config.exploration == "linear":
        horizon = config.epsilon_anneal_env_steps
        left = max(0.0, 1.0 - at.env_steps / horizon) if horizon else 0.0
        epsilon = config.epsilon_final + (1.0 - config.epsilon_final) * left
        return np.full(at.envs_per_worker, epsilon, dtype=np.float32)
    assert config.exploration == "ladder", "resolve() settles exploration=auto before a run"
    total = max(at.num_workers * at.envs_per_worker, 1)
    index = at.rank * at.envs_per_worker + np.arange(at.envs_per_worker)
    exponent = 1 + config.epsilon_alpha * index / max(total - 1, 1)
    ladder = config.epsilon_base**exponent
    if config.epsilon_anneal_env_steps and at.env_steps < config.epsilon_anneal_env_steps:
        progress = at.env_steps / config.epsilon_anneal_env_steps
        ladder = 1.0 + (ladder - 1.0) * progress
    return ladder.astype(np.float32)


def behaviour(config: DQNConfig, at: Behaviour) -> dict:
    return {"epsilon": epsilons(config, at)}


def priority_beta(config: DQNConfig, env_steps: int) -> float:
    """beta annealed linearly from ``priority_beta`` to 1 (Schaul et al. 2016, section 3.4)."""
    if not config.priority_beta_anneal_env_steps:
        return config.priority_beta
    return min(
        1.0, config.priority_beta + (1 - config.priority_beta) * env_steps / config.priority_beta_anneal_env_steps
    )


def initial_priorities(fragment: dict[str, np.ndarray], config: DQNConfig) -> dict[str, np.ndarray]:
    """Ape-X's actor-side priorities: |n-step TD error| under the worker's own network, with
    the window cut at the fragment's end (bootstrapping from max_a Q there)."""
    rewards = clip_rewards(torch.as_tensor(fragment["rewards"], dtype=torch.float64), config.reward_clip)
    T, K = rewards.shape
    n = config.n_step
    terminated = torch.as_tensor(fragment["terminated"])
    truncated = torch.as_tensor(fragment["truncated"]).clone()
    cut_values = torch.as_tensor(fragment["timeout_value"], dtype=torch.float64).clone()
    # The fragment's end cuts every window that reaches it: bootstrap from the last obs.
    open_end = ~terminated[-1] & ~truncated[-1]
    truncated[-1] |= open_end
    cut_values[-1] = torch.where(
        open_end, torch.as_tensor(fragment["bootstrap_value"], dtype=torch.float64), cut_values[-1]
    )
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


class DQN(OptimizedAlgorithm):
    def __init__(self, config: DQNConfig, model: nn.Module, budget_env_steps: Optional[int]):
        # The fused Adam of the shared factory: DQN is the learner-bound algorithm.
        optimizer = make_optimizer("adam", model.parameters(), config.lr, config.adam_eps)
        super().__init__(config, model, budget_env_steps, optimizer)
        self.target = copy.deepcopy(model).requires_grad_(False)
        # Loading a state dict copies into these same tensors, so the lists stay valid.
        self.polyak_pairs: tuple[list[torch.Tensor], list[torch.Tensor]] = (
            list(self.target.parameters()),
            list(model.parameters()),
        )
        self.gradient_steps = 0

    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        """One gradient step on a replay batch: ``rewards``, ``terminated`` and ``truncated``
        are the ``[B, n]`` windows that follow each sampled transition, ``next_obs`` the
        observation the window ends on, ``cut``/``cut_value`` a window ended by a time limit
        and the value recorded there, ``weights`` the importance-sampling weights."""
        cfg = self.config
        lr = self.scheduled_lr(progress.env_steps)
        # With several learners each takes its share of the batch's rows (algos/parallel.py).
        count = len(batch["actions"])
        mine, share = self.shard.take(count)
        if not self.shard.alone:
            batch = {key: value[mine] for key, value in batch.items()}
        rewards = clip_rewards(batch["rewards"], cfg.reward_clip)
        returns, discount, _ = nstep_targets(rewards, batch["terminated"], batch["truncated"], cfg.gamma)
        # .float(): under bf16 autocast the network's outputs are bf16; targets, the loss and
        # the priorities sent to replay stay fp32.
        q = self.model(batch["obs"]).float().gather(-1, batch["actions"].unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_target = self.target(batch["next_obs"]).float()
            if cfg.double:
                best = self.model(batch["next_obs"]).argmax(-1, keepdim=True)
                next_value = next_target.gather(-1, best).squeeze(-1)
            else:
                next_value = next_target.max(-1).values
            # A window cut by a time limit bootstraps from the value recorded at the cut.
            next_value = torch.where(batch["cut"], batch["cut_value"], next_value)
            target = (returns + discount * next_value).to(q.dtype)
        td_error = target - q
        loss = (batch["weights"] * F.huber_loss(q, target, reduction="none", delta=cfg.huber_delta)).mean()
        grad_norm = self.gradient_step(loss, weight=share)
        self.gradient_steps += 1
        if cfg.tau < 1.0:
            with torch.no_grad():  # one fused call: this runs after every gradient step
                torch._foreach_lerp_(*self.polyak_pairs, cfg.tau)
        elif self.gradient_steps % cfg.target_update_interval == 0:
            self.target.load_state_dict(self.model.state_dict())
        stats = {
            "learning_rate": lr,
            "loss": loss.item(),
            "q_mean": q.mean().item(),
            "td_error_abs": td_error.abs().mean().item(),
            "grad_norm": grad_norm,
            "priority_beta": priority_beta(cfg, progress.env_steps),
        }
        priorities = td_error.detach().abs() + cfg.priority_eps
        if not self.shard.alone:  # every row's, from the learner that trained on it
            every = torch.zeros(count, dtype=priorities.dtype, device=priorities.device)
            every[mine] = priorities
            priorities = self.shard.sum(every)
        return Update(stats, priorities=priorities.cpu().numpy())

    def state_dict(self) -> dict:
        return {**super().state_dict(), "target": self.target.state_dict(), "gradient_steps": self.gradient_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.target.load_state_dict(state["target"])
        self.gradient_steps = int(state["gradient_steps"])


def replay_settings(config: DQNConfig) -> ReplaySettings:
    return ReplaySettings(
        capacity=config.replay_capacity,
        shards=config.replay_shards,
        n_step=config.n_step,
        batch_size=config.batch_size,
        learning_starts=config.learning_starts,
        replay_ratio=config.replay_ratio,
        prioritized=config.prioritized,
        priority_alpha=config.priority_alpha,
        priority_beta=functools.partial(priority_beta, config),
    )


SPEC = AlgorithmSpec(
    name="dqn",
    config_class=DQNConfig,
    algorithm_class=DQN,
    flow=replay_settings,
    paper="Horgan et al. 2018, Distributed Prioritized Experience Replay (Ape-X), with double, dueling, n-step DQN",
    presets=PRESETS,
    model_head="q_network",
    behaviour=behaviour,
    worker_postprocess=initial_priorities,
    resolve=settle_exploration,
)
