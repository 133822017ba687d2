"""WorkerPool: the run's rollout workers. Places them on the cluster, keeps track of the
requests each has in flight, replaces a worker that dies, and with ``num_workers: auto``
grows with the nodes that join (asking the autoscaler for room) and shrinks with the nodes
that leave."""

from __future__ import annotations

import time
from typing import Any, Optional

from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

from distrl.errors import DistrlError, EnvContractError
from distrl.metrics import MetricsWriter
from distrl.runtime import backend, cluster
from distrl.runtime.failures import first_line, task_failure
from distrl.runtime.rollout_worker import Request, RolloutWorker, WorkerTask
from distrl.runtime.tally import Tally

NODE_VERDICT_S = 30.0  # how long to wait for the cluster to say whether a silent node died
SAMPLE, WORK = "sample", "work"  # the two kinds of request: fragment back to the driver, or to the flow's task


class WorkerPool:
    def __init__(
        self,
        config: Any,
        parameter_server: Any,
        task: Optional[WorkerTask],
        metrics: MetricsWriter,
        tally: Tally,
        learner_cpu_reserve: float,
    ):
        """``tally``: where each fragment's summary and each replaced worker is counted."""
        self.config = config
        self.runtime = config.runtime
        self.parameter_server = parameter_server
        self.task = task
        self.metrics = metrics
        self.tally = tally
        self.learner_cpu_reserve = learner_cpu_reserve
        # Workers by id. Every worker ever created gets a new id, replacements too, so its env
        # copies are new replay streams and new seeds.
        self.workers: dict[int, Any] = {}
        self.worker_nodes: dict[int, str] = {}
        self.next_worker_id = 0
        self.seed_offset = tally.counters.learner_updates  # a resumed run continues from other seeds
        # Requests out with workers: summary ref -> (worker id, worker handle, fragment ref or None).
        self.inflight: dict[Any, tuple[int, Any, Any]] = {}
        self.restarts_this_run = 0
        self.failures_in_a_row = 0
        self.asked_autoscaler = False
        self.last_rescale = time.monotonic()

    # ---------------------------------------------------------------- size

    @property
    def elastic(self) -> bool:
        return self.runtime.num_workers == "auto"

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def num_nodes(self) -> int:
        return len(set(self.worker_nodes.values()))

    def busy_cpus(self) -> dict[str, float]:
        """CPUs the workers hold, per node."""
        busy: dict[str, float] = {}
        for node in self.worker_nodes.values():
            busy[node] = busy.get(node, 0.0) + self.runtime.num_cpus_per_worker
        return busy

    def initial_count(self) -> int:
        """A fixed count, or (``auto``) as many as fit on the nodes' CPUs next to the learner,
        up to ``runtime.max_workers``."""
        if not self.elastic:
            return int(self.runtime.num_workers)
        count = max(
            1,
            cluster.worker_slots(
                self.runtime.num_cpus_per_worker, free_only=False, head_reserve=self.learner_cpu_reserve
            ),
        )
        return min(count, self.runtime.max_workers) if self.runtime.max_workers else count

    # ---------------------------------------------------------------- placing

    def start(self, count: int) -> tuple[Any, Any]:
        """Create and set up ``count`` workers; returns the environment's (observation space,
        action space). With ``auto``, the workers that fit are enough, but the first one is
        waited for (it may need a node the autoscaler is starting)."""
        self._ask_autoscaler()
        ids = [self._create() for _ in range(count)]
        patience = self.runtime.placement_patience_s if self.elastic else None
        infos = [info for info in self._setup(ids, patience_s=patience, need_one=True) if info]
        if not infos:
            raise DistrlError("No rollout worker could be placed on the cluster.")
        self.last_rescale = time.monotonic()
        return infos[0]["observation_space"], infos[0]["action_space"]

    def _create(self) -> int:
        """A new rollout worker (not yet set up); returns its id."""
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        # A new seed for every worker ever created, so a replacement does not replay its
        # predecessor's episodes.
        seed = self.config.seed * 1_000_003 + 10_007 * worker_id + self.seed_offset
        self.workers[worker_id] = (
            backend.actor(RolloutWorker)
            .options(num_cpus=self.runtime.num_cpus_per_worker, **cluster.spread())
            .remote(worker_id, self.config, self.parameter_server, seed, self.task)
        )
        return worker_id

    def _setup(self, worker_ids: list[int], patience_s: Optional[float] = None, need_one: bool = False) -> list[dict]:
        """Build the envs of these workers. Waits for the cluster to place them (telling the
        user every 30 s), or, with ``patience_s``, gives up on those not placed by then: they
        are removed and {} stands for each in the result. With ``need_one`` it waits on until
        at least one is placed (a cluster that is still growing)."""
        refs = [self.workers[worker_id].setup.remote() for worker_id in worker_ids]
        waited = 0.0
        while True:
            left = None if patience_s is None else patience_s - waited
            step = 30.0 if left is None or left <= 0 else max(0.1, min(30.0, left))
            ready, _ = backend.wait(refs, num_returns=len(refs), timeout=step)
            waited += step
            if len(ready) == len(refs):
                break
            if patience_s is not None and waited >= patience_s and (ready or not need_one):
                break
            self.metrics.message(
                f"waiting for resources: {len(refs) - len(ready)} of {len(refs)} rollout workers not "
                f"placed after {waited:.0f}s (each needs {self.runtime.num_cpus_per_worker} CPU; "
                f"the cluster has {cluster.cluster_cpus():.0f} CPUs)"
            )
        infos = []
        for worker_id, ref in zip(worker_ids, refs):
            try:
                info = backend.get(ref, timeout=0) if ref in ready else None
            except RayTaskError as error:
                raise task_failure(error, f"A rollout worker could not build {self.config.env.id!r}") from None
            except RayActorError:
                info = None  # its node went away while it started
            if info is None:
                self._forget(worker_id)
            else:
                self.worker_nodes[worker_id] = info["node_id"]
            infos.append(info or {})
        return infos

    # ---------------------------------------------------------------- requests

    def submit(self, worker_id: int, kind: str, weights: Optional[tuple[int, Any]]) -> None:
        """Ask a worker for its next fragment: ``SAMPLE`` returns it to the driver, ``WORK``
        hands it to the flow's worker task. ``weights``: the newest ``(version, ref)`` the
        learner published, which the worker loads if it holds an older version."""
        worker = self.workers[worker_id]
        request = Request(
            env_steps=self.tally.counters.env_steps,
            num_workers=len(self.workers),
            rank=list(self.workers).index(worker_id),  # ids only grow: insertion order is sorted
            weights=weights,
        )
        fragment_ref = None
        if kind == SAMPLE:
            fragment_ref, summary_ref = worker.sample.remote(request)
        else:
            summary_ref = worker.work.remote(request)
        self.inflight[summary_ref] = (worker_id, worker, fragment_ref)

    def inflight_of(self, worker_id: int) -> int:
        return sum(1 for i, _, _ in self.inflight.values() if i == worker_id)

    def top_up(self, depth: int, kind: str, weights: Optional[tuple[int, Any]]) -> None:
        """Give every worker ``depth`` requests to work on."""
        for worker_id in list(self.workers):
            while self.inflight_of(worker_id) < depth:
                self.submit(worker_id, kind, weights)

    def pending(self) -> list[Any]:
        return list(self.inflight)

    def receive(self, summary_ref: Any) -> tuple[int, Optional[dict[str, Any]], Any]:
        """``(worker id, summary, fragment ref)`` of a finished request, its summary counted;
        the summary is None if the worker failed (it is replaced or dropped, once, however
        many of its requests fail with it)."""
        worker_id, worker, fragment_ref = self.inflight.pop(summary_ref)
        try:
            summary = backend.get(summary_ref)
        except (RayActorError, RayTaskError) as error:
            if isinstance(error, RayTaskError) and isinstance(error.cause, EnvContractError):
                raise error.cause from None  # every episode would break it again: no replacement helps
            if self.workers.get(worker_id) is worker:
                self._replace(worker_id, error)
            return worker_id, None, None
        self.failures_in_a_row = 0
        self.tally.fragment(summary)
        return worker_id, summary, fragment_ref

    # ---------------------------------------------------------------- failures

    def _forget(self, worker_id: int) -> None:
        handle = self.workers.pop(worker_id, None)
        self.worker_nodes.pop(worker_id, None)
        if handle is not None:
            try:
                backend.kill(handle, no_restart=True)
            except Exception:
                pass  # already gone

    def _replace(self, worker_id: int, error: BaseException) -> None:
        """A worker failed: with ``num_workers: auto`` and its node gone, the pool shrinks;
        otherwise a new worker (new id, new seed) takes its place."""
        reason = first_line(error)
        node = self.worker_nodes.get(worker_id)
        self._forget(worker_id)
        if self.elastic and node is not None and self._node_left(node, error):
            self.metrics.message(f"rollout worker {worker_id} left with its node; {len(self.workers)} remain")
            return
        restarts = self.tally.restarted("worker")
        self.restarts_this_run += 1
        # A crash (RayActorError) is bad luck; an exception in the env is a bug that will
        # happen again, so several in a row without any good fragment end the run.
        self.failures_in_a_row = self.failures_in_a_row + 1 if isinstance(error, RayTaskError) else 0
        limit = self.runtime.max_worker_restarts
        if self.restarts_this_run > limit or self.failures_in_a_row >= 5:
            raise DistrlError(
                f"Rollout workers failed {self.restarts_this_run} times in this run "
                f"({self.failures_in_a_row} errors in a row; limit runtime.max_worker_restarts={limit}); "
                f"the last failure: {reason}. The checkpoints written so far are in "
                f"{self.config.output.dir}/checkpoints."
            )
        new_id = self._create()
        self._setup([new_id], patience_s=self.runtime.placement_patience_s if self.elastic else None)
        if new_id in self.workers:
            self.metrics.message(
                f"rollout worker {worker_id} failed ({reason}); worker {new_id} replaced it "
                f"({restarts} restart(s) so far)"
            )
        if not self.workers:
            raise DistrlError(
                f"Every rollout worker is gone (the last: {reason}); the cluster has no room for new ones."
            )

    def _node_left(self, node: str, error: BaseException) -> bool:
        """Did the worker fail because its node left the cluster? A node that goes away
        first shows as an unavailable actor, and the cluster marks the node dead a few
        seconds later: wait for that verdict, up to NODE_VERDICT_S."""
        deadline = time.monotonic() + (NODE_VERDICT_S if isinstance(error, ActorUnavailableError) else 0.0)
        while True:
            if node not in cluster.alive_nodes():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)

    # ---------------------------------------------------------------- elastic

    def rescale(self) -> None:
        """``num_workers: auto``: add workers when nodes joined (the cluster has CPUs to spare).
        Workers on nodes that left are dropped as their requests fail (``_replace``)."""
        now = time.monotonic()
        if not self.elastic or now - self.last_rescale < self.runtime.elastic_check_s:
            return
        self.last_rescale = now
        # Free CPUs only: this run's own actors and other runs already hold theirs.
        missing = cluster.worker_slots(self.runtime.num_cpus_per_worker, free_only=True)
        if self.runtime.max_workers:
            missing = min(missing, self.runtime.max_workers - len(self.workers))
        if missing <= 0:
            return
        added = [self._create() for _ in range(missing)]
        self._setup(added, patience_s=min(30.0, self.runtime.placement_patience_s))
        placed = [worker_id for worker_id in added if worker_id in self.workers]
        if placed:
            self.metrics.message(
                f"cluster grew: {len(placed)} rollout worker(s) added, {len(self.workers)} on {self.num_nodes} node(s)"
            )
        # Count the next interval from now; after CPUs that were not there after all (taken
        # meanwhile), wait longer before trying again.
        self.last_rescale = time.monotonic() + (0.0 if len(placed) == len(added) else 30.0)

    def _ask_autoscaler(self) -> None:
        """With ``num_workers: auto`` and ``runtime.max_workers``, ask the autoscaler for the
        CPUs of that many workers plus the learner, so a cluster launched from a YAML grows."""
        if self.elastic and self.runtime.max_workers:
            bundles = [{"CPU": self.runtime.num_cpus_per_worker}] * self.runtime.max_workers
            if self.runtime.num_cpus_per_learner:
                bundles.append({"CPU": self.runtime.num_cpus_per_learner})
            cluster.request_cpus(bundles)
            self.asked_autoscaler = True

    def close(self, timeout_s: float = 10.0) -> None:
        """Close every worker's envs (emulator subprocesses end) and withdraw the autoscaler
        request, so the cluster can shrink back after the run."""
        closing = [worker.close.remote() for worker in self.workers.values()]
        try:
            backend.wait(closing, num_returns=len(closing), timeout=timeout_s)
        except Exception:
            pass  # a worker that is gone has nothing left to close
        if self.asked_autoscaler:
            try:
                cluster.withdraw_cpu_request()
            except Exception:
                pass  # the cluster is gone already
