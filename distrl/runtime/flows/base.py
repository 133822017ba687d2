"""What every data flow shares: the driver-side handles it works with, and the steps that
close every update (record it, rescale, report, checkpoint, check the stop rules)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Optional

import ray

from distrl.algos.interface import AlgorithmSpec, FlowSettings
from distrl.runtime.bookkeeping import Bookkeeping
from distrl.runtime.failures import LearnerDied, get_from_learner
from distrl.runtime.learner import LearnerSide, UpdateReport
from distrl.runtime.rollout_worker import WorkerTask
from distrl.runtime.worker_pool import WorkerPool


def fetch_surviving(refs: list[ray.ObjectRef]) -> tuple[list[Any], int]:
    """The objects behind ``refs`` that still exist, and how many were lost (their node left
    the cluster and their actor cannot make them again). One fetch for all when none is lost."""
    from ray.exceptions import ObjectLostError

    try:
        return ray.get(refs), 0
    except ObjectLostError:
        pass
    found = []
    for ref in refs:
        try:
            found.append(ray.get(ref))
        except ObjectLostError:
            pass
    return found, len(refs) - len(found)


class Flow(ABC):
    """A data flow: its actors beyond the common ones, its worker side, its learner side and
    its driver loop. The trainer builds it from the algorithm's flow settings, creates the
    learner and the workers with the sides it hands out, and calls ``run``."""

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
        changes with each restart, which the trainer counts)."""
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

    def run(
        self, pool: WorkerPool, learner: Any, book: Bookkeeping, out_dir: Path, restore_learner: Callable[[], None]
    ) -> str:
        """Train until a stop rule holds; returns the rule. ``restore_learner``: after the
        learner's process died, wait for Ray to restart it and give it the newest state
        (raises ``LearnerDied`` when it cannot)."""
        self.pool, self.learner, self.book, self.out_dir = pool, learner, book, out_dir
        self.restore_learner = restore_learner
        return self.loop()

    @abstractmethod
    def loop(self) -> str:
        """The driver loop; returns the stop rule that ended it."""

    # ---------------------------------------------------------------- steps the loops share

    def receive(self, summary_ref: Any) -> tuple[int, Optional[dict[str, Any]], Any]:
        """A finished worker request, counted: ``(worker id, summary, fragment ref)``; the
        summary is None when the worker failed (the pool replaced it)."""
        worker_id, summary, fragment_ref = self.pool.receive(summary_ref)
        if summary is not None:
            self.book.count_fragment(summary)
        return worker_id, summary, fragment_ref

    def finish_update(self, update_ref: Any, sent_steps: Optional[int] = None) -> None:
        """Record a finished update. ``sent_steps``: the env steps of the fragments it was
        given; if the learner died during it, they are lost, and the learner is restored."""
        try:
            report: UpdateReport = get_from_learner(update_ref, self.out_dir)
        except LearnerDied:
            self.restore_learner()
            self.book.counters.lost_env_steps += sent_steps or 0
            return
        latest = self.pool.latest_weights
        if report.published is not None and (latest is None or report.published[0] > latest[0]):
            # The next requests bring it to the workers. Not an older one: an update that
            # finished before the learner died and was restored with a newer version.
            self.pool.latest_weights = report.published
        self.book.record_update(report, sent_steps)

    def after_update(self) -> Optional[str]:
        """Grow with the cluster, report and checkpoint when due; the stop rule that holds."""
        self.pool.rescale()
        return self.book.tick(self.pool.size, self.pool.num_nodes)
