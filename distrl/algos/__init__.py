"""Algorithm registry. Each algorithm is one module of plain torch math (no Ray import);
the runtime looks it up here by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distrl.algos import ppo


@dataclass(frozen=True)
class AlgorithmSpec:
    name: str
    config_class: type
    learner_class: type
    # Family presets ("pixels", "vector") of nested config values, applied under the user's config.
    presets: dict[str, dict[str, Any]]
    # How the trainer feeds the learner: "fragments" = one fragment from every worker per update.
    data_flow: str
    paper: str


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "ppo": AlgorithmSpec(
        name="ppo",
        config_class=ppo.PPOConfig,
        learner_class=ppo.PPO,
        presets=ppo.PRESETS,
        data_flow="fragments",
        paper="Schulman et al. 2017, Proximal Policy Optimization Algorithms",
    ),
}
