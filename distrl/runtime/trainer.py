"""Trainer: a run's lifecycle. Starts or joins Ray, creates the parameter server, the flow's
actors, the learner and the worker pool, hands the loop to the flow, and on the way out
writes the last checkpoint and releases what it took. It knows no algorithm: the flow the
algorithm registered does the training (``runtime/flows/``)."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any, Optional

import ray
from ray.exceptions import RayTaskError

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import Config
from distrl.metrics import MetricsWriter
from distrl.runtime import cluster
from distrl.runtime.bookkeeping import Bookkeeping
from distrl.runtime.failures import get_from_learner, task_failure
from distrl.runtime.flows import flow_for
from distrl.runtime.learner import Learner
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.worker_pool import WorkerPool


class Trainer:
    def __init__(self, config: Config, out_dir: Path, resume_state: Optional[dict[str, Any]] = None):
        self.config = config
        self.out_dir = out_dir
        self.resume_state = resume_state
        self.pool: Optional[WorkerPool] = None  # the rollout workers, from _start() until run() ends

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
        self.parameter_server = ParameterServer.options(**head).remote()  # type: ignore[attr-defined]
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
        self.learner = Learner.options(  # type: ignore[attr-defined]
            num_cpus=runtime.num_cpus_per_learner, num_gpus=gpus, **({} if gpus else head)
        ).remote(config, self.parameter_server, self.flow.learner_side())
        self.pool.task = self.flow.worker_task(self.learner)
        spaces = self.pool.start(count)
        busy = self.pool.busy_cpus() if self.flow.workers_busy_during_updates() else {}
        device = get_from_learner(
            self.learner.setup.remote(*spaces, busy), self.out_dir, "The learner could not build its model"
        )
        if self.resume_state is not None:
            try:
                ray.get(self.learner.set_state.remote(self.resume_state))
            except RayTaskError as error:
                raise task_failure(
                    error, "The checkpoint does not fit this run's model (was model.* or env changed?)"
                ) from None
        self.pool.latest_weights = ray.get(self.learner.newest_weights.remote())
        self.metrics.message(
            f"distrl: {config.algo} on {config.env.id}: {self.pool.size} rollout workers x "
            f"{runtime.envs_per_worker} envs on {self.pool.num_nodes} node(s), learner on "
            f"{device}; output in {self.out_dir}"
        )
        return self.pool

    def _checkpoint(self) -> Path:
        state = get_from_learner(self.learner.get_state.remote(), self.out_dir)
        # The learner counts every update it applied, also one this driver has not collected
        # yet (after Ctrl-C with an update in flight).
        self.book.counters.learner_updates = int(state["updates"])
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
            out, self.config.output.tensorboard, self.config.output.console, self.config.stop.env_steps
        )
        self.book = Bookkeeping(self.config, self.metrics, self.resume_state)
        self.book.checkpoint = self._checkpoint
        runtime = self.config.runtime
        started_ray = False
        self.pool = None
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            wanted = runtime.num_cpus_per_learner + (
                0 if runtime.num_workers == "auto" else runtime.num_workers * runtime.num_cpus_per_worker
            )
            started_ray = cluster.connect(runtime.address, wanted)
            pool = self._start()
            self.book.start_clock()
            try:
                reason = self.flow.run(pool, self.learner, self.book, out)
            except KeyboardInterrupt:
                self.book.counters.time_s = self.book.elapsed()
                path = self._checkpoint()
                self.metrics.message(f"interrupted; checkpoint written to {path}")
                raise
            self.metrics.message(f"stopped: {reason}; checkpoint in {checkpoint.latest(out)}")
            return reason
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            self.metrics.close()
            if self.pool is not None:
                self.pool.close()
            if started_ray:
                ray.shutdown()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
