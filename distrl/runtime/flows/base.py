"""What every data flow shares: the event a flow yields after each learner update, the
handles it drives, and the hooks the trainer calls to set it up. A flow is a generator
(``updates``): it keeps its own state (requests out, fragments queued, the update in flight)
between yields, and the trainer, which iterates it, does everything else after each update:
counting it, reports, checkpoints, snapshots, evaluation, rescaling and the stop rules."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Generator, Optional

import ray

from distrl.algos.interface import AlgorithmSpec, FlowSettings
from distrl.runtime import backend
from distrl.runtime.learner import LearnerSide, UpdateReport
from distrl.runtime.learner_handle import LearnerHandle
from distrl.runtime.rollout_worker import WorkerTask
from distrl.runtime.tally import Tally
from distrl.runtime.worker_pool import WorkerPool


def fetch_surviving(refs: list[ray.ObjectRef]) -> tuple[list[Any], int]:
    """The objects behind ``refs`` that still exist, and how many were lost (their node left
    the cluster and their actor cannot make them again). One fetch for all when none is lost."""
    from ray.exceptions import ObjectLostError

    try:
        return backend.get(refs), 0
    except ObjectLostError:
        pass
    found = []
    for ref in refs:
        try:
            found.append(backend.get(ref))
        except ObjectLostError:
            pass
    return found, len(refs) - len(found)


@dataclass
class Update:
    """What a flow yields: an update it collected, for the trainer to count. ``report`` is
    None when nothing was learned (the learner died during the update, or replay is still
    filling): the trainer's duties run all the same. ``sent_steps``: the env steps of the
    fragments the update was given (fragment flows; what it did not learn from was lost).
    ``waiting_steps``: steps of counted fragments in no finished update yet. ``duties``:
    False for an update collected on the way to the next, counted without the duties
    (reports and the stop rules count finished updates only, at the one point of a round
    where nothing is in flight)."""

    report: Optional[UpdateReport]
    sent_steps: Optional[int] = None
    waiting_steps: int = 0
    duties: bool = True


@dataclass
class Driving:
    """What a flow drives: the workers, the learner, and the counts it schedules by (read
    only: the trainer counts). ``due``: will the trainer's next duties report, checkpoint or
    stop? A flow that overlaps updates finishes the one in flight first, then."""

    pool: WorkerPool
    learner: LearnerHandle
    tally: Tally
    due: Callable[[], bool]
    waited: float = 0.0  # seconds blocked in wait() since the trainer last took them

    def wait(self, refs: list[Any]) -> Any:
        """The first of ``refs`` to be ready (a worker's summary, an update's report); the
        time blocked is the driver's ``wait`` phase (runtime/phases.py)."""
        start = time.perf_counter()
        ready, _ = backend.wait(refs, num_returns=1)
        self.waited += time.perf_counter() - start
        return ready[0]


class Flow(ABC):
    """A data flow: its actors beyond the common ones, its worker side, its learner side and
    the schedule of its requests. The trainer builds it from the algorithm's flow settings,
    creates the learner and the workers with the sides it hands out, and iterates
    ``updates``."""

    def __init__(self, config: Any, spec: AlgorithmSpec, settings: FlowSettings):
        self.config = config
        self.spec = spec
        self.settings = settings

    # ---------------------------------------------------------------- set-up, before the loop

    def create_actors(self, num_workers: int) -> None:
        """Actors of this flow alone (replay shards), created before the learner and workers.
        An optional hook: most flows have none."""
        return None

    def restartable_actors(self) -> dict[str, list[Any]]:
        """This flow's actors that Ray restarts empty, by kind (their ``incarnation()``
        changes with each restart, which the trainer counts in ``<kind>_restarts``, a field
        of ``runtime/tally.py``'s ``Counters``)."""
        return {}

    @abstractmethod
    def learner_side(self) -> LearnerSide:
        """The object that runs each ``Learner.update`` of this flow."""

    def workers_busy_during_updates(self) -> bool:
        """Do rollout workers keep their CPUs busy for the whole of an update? If not, a CPU
        learner with ``runtime.learner_threads: auto`` takes every core of its node."""
        return True

    def worker_task(self, learner: Any) -> Optional[WorkerTask]:
        """The workers' task (None: workers only ``sample`` and return their fragments)."""
        return None

    # ---------------------------------------------------------------- the loop

    @abstractmethod
    def updates(self, driving: Driving) -> Generator[Update, None, None]:
        """Drive workers and learner; yield after each update collected. Never returns: the
        trainer stops iterating when a stop rule holds."""
