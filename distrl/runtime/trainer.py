"""Trainer: a run's lifecycle. Starts or joins Ray, creates the parameter server, the flow's
actors, the learner and the worker pool, hands the loop to the flow, and on the way out
writes the last checkpoint and releases what it took. It knows no algorithm: the flow the
algorithm registered does the training (``runtime/flows/``)."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import Config
from distrl.metrics import MetricsWriter
from distrl.models import model_notes
from distrl.runtime import cluster
from distrl.runtime.bookkeeping import Bookkeeping
from distrl.runtime.evaluator import Evaluator
from distrl.runtime.failures import LearnerDied, get_from_learner, learner_died, task_failure
from distrl.runtime.flows import flow_for
from distrl.runtime.learner import Learner
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.worker_pool import WorkerPool


class Trainer:
    def __init__(
        self,
        config: Config,
        out_dir: Path,
        resume_state: Optional[dict[str, Any]] = None,
        on_report: Optional[Callable[[dict[str, Any]], None]] = None,
        verbose: bool = False,
    ):
        """``on_report``: called with each progress record (the API's hook, and Tune's);
        ``verbose``: an embedded Ray shows its own notices too."""
        self.config = config
        self.out_dir = out_dir
        self.resume_state = resume_state
        self.on_report = on_report
        self.verbose = verbose
        self.pool: Optional[WorkerPool] = None  # the rollout workers, from _start() until run() ends
        self.evaluator: Any = None  # the evaluation actor, when eval.every_env_steps is set
        self.last_report: dict[str, Any] = {}

    def _learner_gpus(self) -> float:
        wanted = self.config.runtime.num_gpus_per_learner
        if wanted == "auto":
            return 1.0 if cluster.cluster_gpus() >= 1 else 0.0
        return float(wanted)

    def _start(self) -> WorkerPool:
        """Create the actors in the order that starts processes soonest: the learner before
        the workers, so that its CPU on the head is taken first and its process imports torch
        while the workers build their environments. Returns the worker pool (``self.pool``)."""
        config, runtime = self.config, self.config.runtime
        head = cluster.on_head_node()
        gpus = self._learner_gpus()
        # @ray.remote made the class an ActorClass, but mypy ignores class decorators.
        # Ray restarts a dead parameter server, empty, and retries the calls made to it.
        self.parameter_server = ParameterServer.options(  # type: ignore[attr-defined]
            max_restarts=runtime.max_learner_restarts, max_task_retries=-1, **head
        ).remote()
        self.flow = flow_for(config, ALGORITHMS[config.algo])
        self.pool = WorkerPool(
            config,
            self.parameter_server,
            None,
            self.metrics,
            self.book.counters,
            learner_cpu_reserve=0.0 if gpus else runtime.num_cpus_per_learner,
        )
        count = self.pool.initial_count()
        self.flow.create_actors(count)
        # A GPU learner goes wherever the GPU is; a CPU learner stays on the head node.
        # @ray.remote made the class an ActorClass, but mypy ignores class decorators.
        # Ray restarts a learner whose process dies (same handle, fresh process); the driver
        # then gives it the newest state it holds (restore_learner).
        self.learner = Learner.options(  # type: ignore[attr-defined]
            num_cpus=runtime.num_cpus_per_learner,
            num_gpus=gpus,
            max_restarts=runtime.max_learner_restarts,
            **self._learner_placement(gpus, head),
        ).remote(config)
        self.pool.task = self.flow.worker_task(self.learner)
        spaces = self.pool.start(count)
        busy = self.pool.busy_cpus() if self.flow.workers_busy_during_updates() else {}
        self.setup_args = (*spaces, self.parameter_server, self.flow.learner_side(), busy)
        device = get_from_learner(
            self.learner.setup.remote(*self.setup_args), self.out_dir, "The learner could not build its model"
        )
        if self.resume_state is not None:
            try:
                ray.get(self.learner.set_state.remote(self.resume_state))
            except RayTaskError as error:
                raise task_failure(
                    error, "The checkpoint does not fit this run's model (was model.* or env changed?)"
                ) from None
        self._snapshot()
        self.incarnations = self._incarnations()
        self.pool.latest_weights = ray.get(self.learner.newest_weights.remote())
        if config.eval.every_env_steps is not None:
            # @ray.remote made the class an ActorClass, but mypy ignores class decorators.
            # In a Tune trial, an evaluator that reserves CPUs has the group's last bundle.
            placed = cluster.in_bundle(-1) if config.eval.num_cpus and cluster.in_placement_group() else {}
            self.evaluator = Evaluator.options(  # type: ignore[attr-defined]
                num_cpus=config.eval.num_cpus, max_restarts=-1, **placed
            ).remote(config)
            self.evaluation_ref: Any = None
            self.next_evaluation = self.book.counters.env_steps + config.eval.every_env_steps
        self.metrics.message(
            f"distrl: {config.algo} on {config.env.id}: {self.pool.size} rollout workers x "
            f"{runtime.envs_per_worker} envs on {self.pool.num_nodes} node(s), learner on "
            f"{device}; output in {self.out_dir}"
        )
        for note in model_notes(config.model, spaces[0]):
            self.metrics.message(f"distrl: note: {note}")
        return self.pool

    @staticmethod
    def _learner_placement(gpus: float, head: dict) -> dict:
        """Bundle 1 of a Tune trial's placement group (distrl.tune); else a GPU learner goes
        wherever the GPU is and a CPU learner stays on the head node."""
        if cluster.in_placement_group():
            return cluster.in_bundle(1)
        return {} if gpus else head

    def _snapshot(self) -> None:
        """Keep a copy of the learner's state in this process: what a restarted learner gets.
        The learner's own object store would not do: its objects die with it."""
        try:
            self._keep_snapshot(get_from_learner(self.learner.get_state.remote(), self.out_dir))
        except LearnerDied:
            self.restore_learner()  # from the previous snapshot; the next one is due later

    def _keep_snapshot(self, state: dict[str, Any]) -> None:
        self.snapshot, self.snapshot_time = state, time.monotonic()

    def _call_learner(self, method: Any, *args: Any, patience: float = 60.0) -> Any:
        """A call on a learner that Ray may still be restarting: while its death is being
        noticed a call can fail at once, so try again for up to ``patience`` seconds (also the
        longest wait for an answer: a learner that cannot be placed again never answers)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return ray.get(method.remote(*args), timeout=max(deadline - time.monotonic(), 1.0))
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def restore_learner(self) -> None:
        """After the learner's process died: wait for Ray's restart, build the model again and
        load the newest snapshot. The version goes on past the newest one anyone may hold (the
        reports, the parameter server), so versions only increase; ``updates`` stays the
        driver's count, as updates applied and then lost did happen. A report from a learner
        already restored (A3C: several workers see one death) changes nothing."""
        counters, limit = self.book.counters, self.config.runtime.max_learner_restarts
        gave_up = learner_died(
            self.out_dir, f"after {counters.learner_restarts} restart(s); runtime.max_learner_restarts is {limit}"
        )
        try:
            # Past the limit Ray does not restart it either: only a learner already restored
            # (a second report of one death) answers.
            if self._call_learner(self.learner.is_ready, patience=60.0 if counters.learner_restarts < limit else 0.0):
                return
            if counters.learner_restarts >= limit:
                raise gave_up
            assert self.pool is not None
            state = dict(self.snapshot)
            published = ray.get(self.parameter_server.get_version.remote())
            # Past every version reported, published, or (A3C: one reply per worker the driver
            # has not read yet) handed straight to a worker.
            version = max(int(state["version"]), self.book.latest_version, published) + self.pool.size + 1
            state["version"], state["updates"] = version, counters.learner_updates
            self._call_learner(self.learner.setup, *self.setup_args, state)
            self.pool.latest_weights = self._call_learner(self.learner.newest_weights)
        except (RayActorError, GetTimeoutError):
            raise gave_up from None
        except RayTaskError as error:
            raise task_failure(error, "The restarted learner could not load its state") from None
        self.book.latest_version = version
        counters.learner_restarts += 1
        self.metrics.message(
            f"the learner's process died; Ray restarted it and it goes on from a copy of its state taken "
            f"{time.monotonic() - self.snapshot_time:.0f} s earlier (restart {counters.learner_restarts}, "
            f"now at version {version})"
        )

    def _poll_evaluation(self, env_steps: int) -> Optional[dict[str, Any]]:
        """The evaluation round that finished since the last call, if any; asks for the next
        one when it is due and none is playing (a slow round delays the next, rather than
        queueing rounds of stale weights behind it)."""
        result = None
        if self.evaluation_ref is not None:
            ready, _ = ray.wait([self.evaluation_ref], timeout=0)
            if not ready:
                return None
            ref, self.evaluation_ref = self.evaluation_ref, None
            try:
                result = ray.get(ref)
            except (RayActorError, RayTaskError) as error:
                self.metrics.message(
                    f"an evaluation round failed ({str(error).strip().splitlines()[-1][:200]}); "
                    f"training goes on and the next round is asked for as usual"
                )
            if result is not None and result["version"] is None:
                result = None  # nothing was published yet
        if self.evaluation_ref is None and env_steps >= self.next_evaluation:
            self.evaluation_ref = self.evaluator.evaluate.remote(env_steps, self.parameter_server)
            self.next_evaluation = env_steps + (self.config.eval.every_env_steps or 0)
        return result

    def _report(self, record: dict[str, Any]) -> None:
        self.last_report = record
        if self.on_report is not None:
            self.on_report(record)

    def _incarnations(self) -> dict[str, list[Any]]:
        actors = {"parameter_server": [self.parameter_server], **self.flow.restartable_actors()}
        return {kind: ray.get([actor.incarnation.remote() for actor in group]) for kind, group in actors.items()}

    def _check_actors(self) -> None:
        """Count the restarts Ray made of the parameter server and the flow's actors since the
        last look (at each report). A parameter server comes back empty: the learner publishes
        its weights to it again. A replay shard comes back empty and refills."""
        now = self._incarnations()
        counters = self.book.counters
        for kind, tokens in now.items():
            restarted = [i for i, (old, new) in enumerate(zip(self.incarnations[kind], tokens)) if old != new]
            if not restarted:
                continue
            if kind == "parameter_server":
                counters.parameter_server_restarts += 1
                self.learner.republish.remote()
                self.metrics.message(
                    "the parameter server's process died; Ray restarted it and the learner published its weights again"
                )
            else:
                counters.replay_shard_restarts += len(restarted)
                self.metrics.message(
                    f"replay shard(s) {restarted} died; Ray restarted them empty, and they refill from the workers"
                )
        self.incarnations = now

    def _checkpoint(self) -> Path:
        try:
            state = get_from_learner(self.learner.get_state.remote(), self.out_dir)
        except LearnerDied:
            self.restore_learner()
            state = get_from_learner(self.learner.get_state.remote(), self.out_dir)
        self._keep_snapshot(state)
        # The learner counts every update it applied, also one this driver has not collected
        # yet (after Ctrl-C with an update in flight).
        self.book.counters.learner_updates = max(self.book.counters.learner_updates, int(state["updates"]))
        state.update(self.book.state())
        return checkpoint.save(
            self.out_dir / "checkpoints",
            self.book.counters.learner_updates,
            state,
            self.config.to_yaml(),
            self.config.output.keep_checkpoints,
        )

    def run(self) -> str:
        """Train until a stop rule holds; returns the rule. Raises KeyboardInterrupt on
        Ctrl-C or SIGTERM after writing a checkpoint."""
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        for stale in (out / "checkpoints").glob(".tmp-*"):  # a write cut off by a crash
            shutil.rmtree(stale, ignore_errors=True)
        (out / "config.yaml").write_text(self.config.to_yaml())
        self.metrics = MetricsWriter(
            out, self.config.output.tensorboard, self.config.output.console, self.config.stop.env_steps, self.config
        )
        self.book = Bookkeeping(self.config, self.metrics, self.resume_state)
        self.book.checkpoint = self._checkpoint
        self.book.snapshot = self._snapshot
        self.book.check_actors = self._check_actors
        self.book.on_report = self._report
        if self.config.eval.every_env_steps is not None:
            self.book.poll_evaluation = self._poll_evaluation
        runtime = self.config.runtime
        started_ray = False
        self.pool = None
        # Python lets the main thread alone set handlers; a run driven from another thread
        # (a Tune trial, a user's thread) leaves SIGTERM to whoever owns the process.
        main_thread = threading.current_thread() is threading.main_thread()
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if main_thread else None
        try:
            wanted = (
                runtime.num_cpus_per_learner
                + (0 if runtime.num_workers == "auto" else runtime.num_workers * runtime.num_cpus_per_worker)
                + (self.config.eval.num_cpus if self.config.eval.every_env_steps is not None else 0)
            )
            started_ray = cluster.connect(runtime.address, wanted, verbose=self.verbose)
            pool = self._start()
            self.book.start_clock()
            try:
                reason = self.flow.run(pool, self.learner, self.book, out, self.restore_learner)
            except KeyboardInterrupt:
                self.book.counters.time_s = self.book.elapsed()
                path = self._checkpoint()
                self.metrics.message(f"interrupted; checkpoint written to {path}")
                raise
            self.metrics.message(f"stopped: {reason}; checkpoint in {checkpoint.latest(out)}")
            return reason
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous_sigterm)
            self.metrics.close()
            if self.pool is not None:
                self.pool.close()
            if self.evaluator is not None:
                ray.kill(self.evaluator)  # a round still playing is of no use now
            if started_ray:
                ray.shutdown()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
