"""ParameterServer: the latest published weights, as one object ref, and their version."""

from __future__ import annotations

import os
import time
from typing import Optional

import ray


@ray.remote(num_cpus=0)
class ParameterServer:
    """Broadcasting is "put once, every worker gets the ref": the learner ``ray.put``s the
    weights once per version and workers that ask get the same ref, so the object store copies
    them once per node, not once per worker. It holds no model: whoever updates the weights
    (the learner, in every data flow) publishes them here."""

    def __init__(self):
        self.version = -1
        self.weights_ref: Optional[ray.ObjectRef] = None
        self.started = (os.getpid(), time.time())

    def incarnation(self) -> tuple[int, float]:
        """Changes when Ray restarts this actor (it comes back empty; the learner's next
        publish fills it): how the driver counts restarts."""
        return self.started

    def publish(self, weights_ref: list[ray.ObjectRef], version: int) -> None:
        # The ref arrives wrapped in a list so that Ray hands over the ref, not the weights.
        if version > self.version:
            self.version = version
            self.weights_ref = weights_ref[0]

    def latest(self, known_version: int) -> Optional[tuple[int, list[ray.ObjectRef]]]:
        """``(version, [ref])`` when there is something newer than ``known_version``, else None."""
        if self.version <= known_version or self.weights_ref is None:
            return None
        return self.version, [self.weights_ref]

    def get_version(self) -> int:
        return self.version
