"""Tabular Q-learning (Watkins 1989; Sutton & Barto 2018, section 6.5), for environments
with a small discrete state space (FrozenLake, NChain, or CartPole through
``env.options.bins``). Workers act epsilon-greedily on their copy of the table; the
learner applies the textbook update to every transition of the fragments, in time order:

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * max_a' Q(s', a') - Q(s, a))

with no bootstrap after a terminal state, and bootstrapping from the final observation's
value after a time-limit truncation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

from distrl.algos.interface import AlgorithmSpec, Behaviour, Progress, SynchronousSettings, Update
from distrl.options import option

if TYPE_CHECKING:
    from distrl.models import QTable


@dataclass
class QLearningConfig:
    alpha: float = option(0.1, "step size of the tabular update")
    gamma: float = option(0.99, "discount factor")
    epsilon_start: float = option(1.0, "exploration rate at the start")
    epsilon_end: float = option(0.01, "exploration rate after epsilon_anneal_env_steps")
    epsilon_anneal_env_steps: int = option(100_000, "env steps over which epsilon falls linearly to epsilon_end")

    section = "qlearning"

    def __post_init__(self):
        for key in ("alpha", "gamma", "epsilon_start", "epsilon_end"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"Config key 'qlearning.{key}' must be in [0, 1], got {getattr(self, key)}.")


PRESETS = {
    "vector": {"runtime": {"envs_per_worker": 4, "fragment_length": 64}, "model": {"kind": "mlp"}},
}


def epsilon(config: QLearningConfig, env_steps: int) -> float:
    if not config.epsilon_anneal_env_steps:
        return config.epsilon_end
    progress = min(1.0, env_steps / config.epsilon_anneal_env_steps)
    return config.epsilon_start + (config.epsilon_end - config.epsilon_start) * progress


def behaviour(config: QLearningConfig, at: Behaviour) -> dict[str, Any]:
    return {"epsilon": epsilon(config, at.env_steps)}


class QLearning:
    def __init__(self, config: QLearningConfig, model: QTable, budget_env_steps: Optional[int]):
        self.config = config
        self.model = model

    @torch.no_grad()
    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update:
        cfg = self.config
        table = self.model.table.data.cpu().numpy()  # a view: updates write through (CPU)
        states = batch["obs"].argmax(-1).cpu().numpy()  # [T, B] from one-hot rows
        last_states = batch["last_obs"].argmax(-1).cpu().numpy()
        actions = batch["actions"].cpu().numpy()
        rewards = batch["rewards"].cpu().numpy()
        terminated = batch["terminated"].cpu().numpy()
        truncated = batch["truncated"].cpu().numpy()
        timeout_value = batch["timeout_value"].cpu().numpy()
        T, B = actions.shape
        errors = []
        for b in range(B):
            for t in range(T):
                s, a = states[t, b], actions[t, b]
                if terminated[t, b]:
                    bootstrap = 0.0
                elif truncated[t, b]:
                    bootstrap = timeout_value[t, b]
                else:
                    next_state = states[t + 1, b] if t + 1 < T else last_states[b]
                    bootstrap = table[next_state].max()
                error = rewards[t, b] + cfg.gamma * bootstrap - table[s, a]
                table[s, a] += cfg.alpha * error
                errors.append(abs(error))
        if self.model.table.device.type != "cpu":
            self.model.table.data.copy_(torch.from_numpy(table))
        return Update(
            {
                "td_error_abs": float(np.mean(errors)),
                "epsilon": epsilon(cfg, progress.env_steps),
                "q_max_mean": float(table.max(1).mean()),
            }
        )

    # No optimizer state: the table is the model's one parameter and is checkpointed with it.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


SPEC = AlgorithmSpec(
    name="qlearning",
    config_class=QLearningConfig,
    algorithm_class=QLearning,
    flow=lambda config: SynchronousSettings(),
    paper="Watkins 1989; Sutton & Barto 2018, section 6.5",
    presets=PRESETS,
    model_head="q_table",
    behaviour=behaviour,
    single_learner="tabular Q-learning updates table entries one transition at a time, with no gradient to share",
)
