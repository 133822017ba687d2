"""What an algorithm gives the runtime, and what the runtime gives it back.

An algorithm is plain torch math with no Ray in it (``docs/design.md``, "Adding an
algorithm"). It registers an :class:`AlgorithmSpec`, which names

- its config section (a dataclass of :func:`distrl.options.option` fields),
- the class that updates the model: :class:`Algorithm` (``learn`` on a batch) or, for
  algorithms whose workers compute gradients, :class:`GradientAlgorithm`,
- the data flow it runs on, as a typed settings object (one of the ``*Settings`` classes
  below), built from its config section. The runtime picks the flow by that type and reads
  nothing else of the algorithm's config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol, Union

import numpy as np
import torch
import torch.nn as nn


@dataclass(frozen=True)
class Progress:
    """Where the run stands when an update is made: schedules (learning rate, clip range,
    importance-weight exponent) are functions of the env steps collected so far."""

    env_steps: int = 0


@dataclass
class Update:
    """What one ``learn`` call reports: scalar statistics for progress.jsonl and TensorBoard,
    and for replay-based algorithms the new priority of every transition of the batch."""

    stats: dict[str, float]
    priorities: Optional[np.ndarray] = None


# ----------------------------------------------------------------------------- data flows
# docs/design.md draws each flow. An algorithm picks one by returning its settings.


@dataclass(frozen=True)
class SynchronousSettings:
    """One fragment from every worker, then one update on all of them (lag 0).
    ``overlap_sampling``: workers sample the next round during the update (lag <= 1)."""

    overlap_sampling: bool = False


@dataclass(frozen=True)
class StreamingSettings:
    """Workers sample without pause; the learner updates on fragments in arrival order,
    ``fragments_per_update`` at a time (0: as many as there are workers)."""

    fragments_per_update: int = 0


@dataclass(frozen=True)
class GradientSettings:
    """Each worker computes the gradient on its own fragment and the learner applies it at
    once; nobody waits for anybody."""


@dataclass(frozen=True)
class ReplaySettings:
    """Workers write transitions (with initial priorities) to replay shards; the learner
    samples ``batch_size`` transitions per gradient step, ``replay_ratio`` sampled
    transitions per collected env step, once ``learning_starts`` steps are stored."""

    capacity: int
    shards: int
    n_step: int
    batch_size: int
    learning_starts: int
    replay_ratio: float
    prioritized: bool
    priority_alpha: float
    # The importance-sampling exponent beta at a given env step (Schaul et al. 2016).
    priority_beta: Callable[[int], float] = field(default=lambda env_steps: 1.0)


FlowSettings = Union[SynchronousSettings, StreamingSettings, GradientSettings, ReplaySettings]


# ----------------------------------------------------------------------------- interfaces


class Algorithm(Protocol):
    """Updates the learner's model from batches. Built once per run on the learner with the
    algorithm's config section, the model, and the run's env-step budget (schedules anneal
    over it; None when the run has none)."""

    def __init__(self, config: Any, model: nn.Module, budget_env_steps: Optional[int]) -> None: ...

    def learn(self, batch: dict[str, torch.Tensor], progress: Progress) -> Update: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


Gradients = list[Optional[np.ndarray]]


class GradientAlgorithm(Protocol):
    """The asynchronous-gradients variant: ``gradients`` runs on a worker with its own model
    copy; ``apply_gradients`` runs on the learner with the one shared optimizer."""

    def __init__(self, config: Any, model: nn.Module, budget_env_steps: Optional[int]) -> None: ...

    @staticmethod
    def gradients(
        model: nn.Module, batch: dict[str, torch.Tensor], config: Any
    ) -> tuple[Gradients, dict[str, float]]: ...

    def apply_gradients(self, gradients: Gradients, progress: Progress) -> Update: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Behaviour:
    """Where a worker's env copies stand, for exploration schedules that differ per copy
    (Ape-X's epsilon ladder) or change with the run (annealed epsilon)."""

    rank: int  # this worker's position among the current workers
    num_workers: int
    envs_per_worker: int
    env_steps: int


@dataclass(frozen=True)
class AlgorithmSpec:
    """An algorithm's registration (``distrl/algos/__init__.py`` lists them)."""

    name: str
    config_class: type
    algorithm_class: type
    # The data flow and its settings, from the algorithm's config section.
    flow: Callable[[Any], FlowSettings]
    # "Author et al. YEAR, Title": shown by `distrl train --help`.
    paper: str
    # Family presets ("pixels", "vector") of nested config values, applied under the user's config.
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The network: "actor_critic", "q_network" or "q_table".
    model_head: str = "actor_critic"
    # Keyword arguments for the policy's act() on a worker (exploration rates).
    behaviour: Optional[Callable[[Any, Behaviour], dict[str, Any]]] = None
    # Arrays a worker adds to each fragment before it leaves (initial priorities).
    worker_postprocess: Optional[Callable[[dict[str, np.ndarray], Any], dict[str, np.ndarray]]] = None
    # Settles the section's "auto" choices from the whole resolved config (DQN's exploration
    # schedule by the number of env copies), so that OUT/config.yaml says what ran.
    resolve: Optional[Callable[[Any, Any], None]] = None
    # Why the algorithm runs with one learner only (``runtime.num_learners`` > 1 is refused
    # with this reason); None: its learners share every gradient step (algos/parallel.py).
    single_learner: Optional[str] = None
