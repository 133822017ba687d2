"""The data flows, one module each (``docs/design.md`` draws them). An algorithm names its
flow by the settings type its spec returns; this table is the only place that maps the two.

- ``synchronous``: one fragment from every worker, then one update.
- ``streaming``: workers sample continuously; the learner updates on fragments as they arrive.
- ``gradients``: workers compute gradients; the learner applies them as they arrive.
- ``replay``: workers fill replay shards; the learner samples, updates, sends priorities back.
"""

from __future__ import annotations

from typing import Any

from distrl.algos.interface import (
    AlgorithmSpec,
    GradientSettings,
    ReplaySettings,
    StreamingSettings,
    SynchronousSettings,
)
from distrl.runtime.flows.base import Driving, Flow, Update
from distrl.runtime.flows.gradients import GradientFlow
from distrl.runtime.flows.replay import ReplayFlow
from distrl.runtime.flows.streaming import StreamingFlow
from distrl.runtime.flows.synchronous import SynchronousFlow

FLOWS: dict[type, type[Flow]] = {
    SynchronousSettings: SynchronousFlow,
    StreamingSettings: StreamingFlow,
    GradientSettings: GradientFlow,
    ReplaySettings: ReplayFlow,
}


def flow_for(config: Any, spec: AlgorithmSpec) -> Flow:
    """The flow the algorithm's settings ask for, built with those settings."""
    settings = spec.flow(config.algo_config)
    return FLOWS[type(settings)](config, spec, settings)


__all__ = ["FLOWS", "Driving", "Flow", "Update", "flow_for"]
