"""Algorithm registry. Each algorithm is one module of plain torch math (no Ray import);
the runtime looks it up here by name and gives it its data flow.

Data flows (DESIGN.md, "How each algorithm uses the parts"):

- ``fragments``: one fragment from every worker, then one update (A2C, PPO, Q-learning).
- ``stream``: workers sample continuously; the learner updates on fragments as they
  arrive (IMPALA, APPO).
- ``gradients``: each worker computes gradients on its own fragment and the
  ParameterServer applies them with one shared optimizer (A3C).
- ``replay``: workers fill replay shards; the learner samples, updates and sends
  priorities back (DQN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from distrl.algos import a2c, a3c, appo, dqn, impala, ppo, qlearning


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    config_class: type
    learner_class: type
    # Family presets ("pixels", "vector") of nested config values, applied under the user's config.
    presets: dict[str, dict[str, Any]]
    data_flow: str
    paper: str
    # The network: "actor_critic", "q_network" or "q_table".
    model_head: str = "actor_critic"
    # Keyword arguments for the policy's act() on a worker (exploration rates).
    behaviour: Optional[Callable[..., dict]] = None
    # Extra fragment arrays a worker computes (initial priorities).
    worker_postprocess: Optional[Callable[..., dict]] = None
    # A3C: the worker's gradient computation.
    worker_gradients: Optional[Callable[..., tuple]] = None


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(
        "ppo", ppo.PPOConfig, ppo.PPO, ppo.PRESETS, "fragments",
        "Schulman et al. 2017, Proximal Policy Optimization Algorithms",
    ),
    "a2c": AlgorithmSpec(
        "a2c", a2c.A2CConfig, a2c.A2C, a2c.PRESETS, "fragments",
        "Mnih et al. 2016, Asynchronous Methods for Deep RL (synchronous variant)",
    ),
    "a3c": AlgorithmSpec(
        "a3c", a3c.A3CConfig, a3c.A3C, a3c.PRESETS, "gradients",
        "Mnih et al. 2016, Asynchronous Methods for Deep Reinforcement Learning",
        worker_gradients=a3c.compute_gradients,
    ),
    "impala": AlgorithmSpec(
        "impala", impala.IMPALAConfig, impala.IMPALA, impala.PRESETS, "stream",
        "Espeholt et al. 2018, IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures",
    ),
    "appo": AlgorithmSpec(
        "appo", appo.APPOConfig, appo.APPO, appo.PRESETS, "stream",
        "IMPALA's V-trace with PPO's clipped surrogate (Espeholt et al. 2018; Schulman et al. 2017)",
    ),
    "dqn": AlgorithmSpec(
        "dqn", dqn.DQNConfig, dqn.DQN, dqn.PRESETS, "replay",
        "Horgan et al. 2018, Distributed Prioritized Experience Replay (Ape-X), with double, dueling, n-step DQN",
        model_head="q_network", behaviour=dqn.behaviour, worker_postprocess=dqn.initial_priorities,
    ),
    "qlearning": AlgorithmSpec(
        "qlearning", qlearning.QLearningConfig, qlearning.QLearning, qlearning.PRESETS, "fragments",
        "Watkins 1989; Sutton & Barto 2018, section 6.5",
        model_head="q_table", behaviour=qlearning.behaviour,
    ),
}
