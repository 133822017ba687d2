"""Trainer: the driver loop. Starts or joins Ray, creates the actors, feeds fragments to the
learner with bounded work in flight, replaces dead workers, writes metrics and checkpoints,
and stops on the stop rules."""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import ray
from ray.exceptions import RayActorError, RayTaskError

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import Config
from distrl.errors import DistrlError
from distrl.metrics import MetricsWriter
from distrl.runtime import cluster
from distrl.runtime.learner import Learner
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.rollout_worker import RolloutWorker

RETURN_WINDOW = 100  # episode_return_mean is over the last 100 episodes


@dataclass
class Counters:
    """Totals over the whole run, carried across --resume."""

    env_steps: int = 0
    env_frames: int = 0
    episodes: int = 0
    learner_updates: int = 0
    time_s: float = 0.0
    worker_restarts: int = 0


def task_failure(error: BaseException, context: str) -> DistrlError:
    """A failure inside an actor as one paragraph: the user-facing error raised there as it
    is, anything else as ``context`` plus the original exception's type and message (not
    Ray's header line with the remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, DistrlError):
        return cause
    if cause is not None:
        return DistrlError(f"{context}: {type(cause).__name__}: {str(cause).strip()}")
    return DistrlError(f"{context}: {first_line(error)}")


def first_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(error, RayActorError):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Trainer:
    def __init__(self, config: Config, out_dir: Path, resume_state: Optional[dict[str, Any]] = None):
        self.config = config
        self.out_dir = out_dir
        self.spec = ALGORITHMS[config.algo]
        self.resume_state = resume_state
        self.counters = Counters(**(resume_state or {}).get("counters", {}))
        self.recent_returns: deque[float] = deque((resume_state or {}).get("recent_returns", []), maxlen=RETURN_WINDOW)
        self.recent_lengths: deque[float] = deque((resume_state or {}).get("recent_lengths", []), maxlen=RETURN_WINDOW)
        self.workers: list[Any] = []
        self.worker_nodes: list[str] = []
        self.workers_created = 0
        self.restarts_this_run = 0
        self.failures_in_a_row = 0
        self._learner_stats: dict[str, list[float]] = {}
        self._lags: list[float] = []

    # ---------------------------------------------------------------- set-up

    def _num_workers(self) -> int:
        runtime = self.config.runtime
        if runtime.num_workers != "auto":
            return int(runtime.num_workers)
        spare = cluster.cluster_cpus() - runtime.num_cpus_per_learner
        return max(1, int(spare // max(runtime.num_cpus_per_worker, 1e-9)))

    def _learner_gpus(self) -> float:
        wanted = self.config.runtime.num_gpus_per_learner
        if wanted == "auto":
            return 1.0 if cluster.cluster_gpus() >= 1 else 0.0
        return float(wanted)

    def _create_worker(self, index: int) -> Any:
        # A new seed for every worker ever created, so a replacement does not replay its
        # predecessor's episodes; a resumed run continues from different seeds too.
        seed = self.config.seed * 1_000_003 + 10_007 * self.workers_created + self.counters.learner_updates
        self.workers_created += 1
        return RolloutWorker.options(
            num_cpus=self.config.runtime.num_cpus_per_worker,
            scheduling_strategy="SPREAD",
        ).remote(index, self.config, self.parameter_server, seed)

    def _setup_workers(self, workers: list[Any]) -> list[dict[str, Any]]:
        refs = [worker.setup.remote() for worker in workers]
        waited = 0.0
        while True:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=30.0)
            if len(ready) == len(refs):
                break
            waited += 30.0
            self.metrics.message(
                f"waiting for resources: {len(refs) - len(ready)} of {len(refs)} rollout workers not "
                f"placed after {waited:.0f}s (each needs {self.config.runtime.num_cpus_per_worker} CPU; "
                f"the cluster has {cluster.cluster_cpus():.0f} CPUs)"
            )
        try:
            return ray.get(refs)
        except RayTaskError as error:
            raise task_failure(error, f"A rollout worker could not build {self.config.env.id!r}") from None

    def _start(self) -> None:
        runtime = self.config.runtime
        self.parameter_server = ParameterServer.remote()
        num_workers = self._num_workers()
        self.workers = [self._create_worker(i) for i in range(num_workers)]
        self.learner = Learner.options(num_cpus=runtime.num_cpus_per_learner, num_gpus=self._learner_gpus()).remote(
            self.config, self.parameter_server
        )
        infos = self._setup_workers(self.workers)
        self.worker_nodes = [info["node_id"] for info in infos]
        try:
            device = ray.get(self.learner.setup.remote(infos[0]["observation_space"], infos[0]["action_space"]))
        except RayTaskError as error:
            raise task_failure(error, "The learner could not build its model") from None
        if self.resume_state is not None:
            try:
                ray.get(self.learner.set_state.remote(self.resume_state))
            except RayTaskError as error:
                raise task_failure(
                    error, "The checkpoint does not fit this run's model (was model.* or env changed?)"
                ) from None
        self.metrics.message(
            f"distrl: {self.config.algo} on {self.config.env.id}: {num_workers} rollout workers x "
            f"{runtime.envs_per_worker} envs on {len(set(self.worker_nodes))} node(s), learner on {device}; "
            f"output in {self.out_dir}"
        )

    # ---------------------------------------------------------------- workers

    def _replace_worker(self, index: int, error: BaseException) -> None:
        self.counters.worker_restarts += 1
        self.restarts_this_run += 1
        reason = first_line(error)
        # A crash (RayActorError) is bad luck; an exception in the env is a bug that will
        # happen again, so several in a row without any good fragment end the run.
        self.failures_in_a_row = self.failures_in_a_row + 1 if isinstance(error, RayTaskError) else 0
        limit = self.config.runtime.max_worker_restarts
        if self.restarts_this_run > limit or self.failures_in_a_row >= 5:
            raise DistrlError(
                f"Rollout workers failed {self.restarts_this_run} times in this run "
                f"({self.failures_in_a_row} errors in a row; limit runtime.max_worker_restarts={limit}); "
                f"the last failure: {reason}. The checkpoints written so far are in {self.out_dir / 'checkpoints'}."
            )
        try:
            ray.kill(self.workers[index], no_restart=True)
        except Exception:
            pass  # already gone
        self.workers[index] = self._create_worker(index)
        (info,) = self._setup_workers([self.workers[index]])
        self.worker_nodes[index] = info["node_id"]
        self.metrics.message(
            f"rollout worker {index} failed ({reason}); replaced it "
            f"({self.counters.worker_restarts} restart(s) so far)"
        )

    def _request(self, index: int) -> tuple[Any, Any]:
        return self.workers[index].sample.remote()

    def _gather(self, pending: dict[int, tuple[Any, Any]]) -> dict[int, Any]:
        """Wait until every worker in ``pending`` delivered a fragment; a worker that dies
        on the way is replaced and asked again. Returns ``{index: fragment_ref}``."""
        fragments: dict[int, Any] = {}
        while pending:
            by_summary = {summary_ref: index for index, (_, summary_ref) in pending.items()}
            ready, _ = ray.wait(list(by_summary), num_returns=1)
            for summary_ref in ready:
                index = by_summary[summary_ref]
                fragment_ref, _ = pending.pop(index)
                try:
                    summary = ray.get(summary_ref)
                except (RayActorError, RayTaskError) as error:
                    self._replace_worker(index, error)
                    pending[index] = self._request(index)
                    continue
                self.failures_in_a_row = 0
                self._count_fragment(summary)
                fragments[index] = fragment_ref
        return fragments

    def _count_fragment(self, summary: dict[str, Any]) -> None:
        self.counters.env_steps += summary["env_steps"]
        self.counters.env_frames += summary["env_frames"]
        self.counters.episodes += len(summary["episode_returns"])
        self.recent_returns.extend(summary["episode_returns"])
        self.recent_lengths.extend(summary["episode_lengths"])

    # ---------------------------------------------------------------- learner

    def _learner_died(self, error: BaseException) -> DistrlError:
        latest = checkpoint.latest(self.out_dir)
        where = f"the newest checkpoint is {latest}; continue with --resume {self.out_dir}" if latest else "no checkpoint was written yet"
        return DistrlError(
            f"The learner process died ({str(error).strip().splitlines()[0]}); the run cannot go on "
            f"without it. {where[0].upper() + where[1:]}."
        )

    def _finish_update(self, update_ref: Any) -> None:
        try:
            stats = ray.get(update_ref)
        except RayActorError as error:
            raise self._learner_died(error) from None
        except RayTaskError as error:
            raise task_failure(error, "The learner's update failed") from None
        self.counters.learner_updates += 1
        self._lags.append(stats.pop("policy_lag"))
        stats.pop("learner_version", None)
        for key, value in stats.items():
            self._learner_stats.setdefault(key, []).append(float(value))

    def _train_on_fragments(self) -> str:
        """PPO/A2C data flow: one fragment from every worker, then one update. With
        ``async_sampling`` the workers already sample the next round during the update."""
        overlap = bool(getattr(self.config.algo_config, "async_sampling", False))
        pending: dict[int, tuple[Any, Any]] = {}
        update_ref = None
        while True:
            for index in range(len(self.workers)):
                if index not in pending:
                    pending[index] = self._request(index)
            fragment_refs = self._gather(pending)
            if update_ref is not None:
                self._finish_update(update_ref)
            update_ref = self.learner.update.remote(
                [fragment_refs[i] for i in sorted(fragment_refs)], self.counters.env_steps
            )
            # The learner's task holds the fragments now; dropping our refs frees them as
            # soon as it is done, which keeps the object store flat.
            del fragment_refs
            if not overlap or self._bookkeeping_due():
                # Reports, checkpoints and the stop decision count finished updates only.
                self._finish_update(update_ref)
                update_ref = None
            reason = self._after_update()
            if reason:
                return reason

    # ---------------------------------------------------------------- bookkeeping

    def _elapsed(self) -> float:
        return self._time_base + (time.monotonic() - self._started)

    def episode_return_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def _stop_reason(self) -> Optional[str]:
        stop = self.config.stop
        if stop.env_steps is not None and self.counters.env_steps >= stop.env_steps:
            return f"env_steps {self.counters.env_steps} >= {stop.env_steps}"
        if (
            stop.reward is not None
            and len(self.recent_returns) >= RETURN_WINDOW
            and self.episode_return_mean() >= stop.reward
        ):
            return f"episode_return_mean {self.episode_return_mean():.2f} >= {stop.reward}"
        if stop.seconds is not None and self._elapsed() >= stop.seconds:
            return f"time {self._elapsed():.0f}s >= {stop.seconds}s"
        return None

    def _report_due(self, now: float) -> bool:
        return now - self._last_report >= self.config.output.report_every_s

    def _checkpoint_due(self, now: float) -> bool:
        return now - self._last_checkpoint >= self.config.output.checkpoint_every_s

    def _bookkeeping_due(self) -> bool:
        now = time.monotonic()
        return self._report_due(now) or self._checkpoint_due(now) or self._stop_reason() is not None

    def _after_update(self) -> Optional[str]:
        now = time.monotonic()
        self.counters.time_s = self._elapsed()
        reason = self._stop_reason()
        if reason or self._report_due(now):
            self._report(now)
        if reason or self._checkpoint_due(now):
            self._checkpoint()
        return reason

    def _report(self, now: float) -> None:
        elapsed = max(now - self._last_report, 1e-9)
        record = {
            "time_s": round(self.counters.time_s, 3),
            "env_steps": self.counters.env_steps,
            "env_frames": self.counters.env_frames,
            "episodes": self.counters.episodes,
            "episode_return_mean": self.episode_return_mean(),
            "episode_length_mean": float(np.mean(self.recent_lengths)) if self.recent_lengths else math.nan,
            "env_steps_per_s": (self.counters.env_steps - self._last_report_steps) / elapsed,
            "learner_updates": self.counters.learner_updates,
            "policy_lag_mean": float(np.mean(self._lags)) if self._lags else 0.0,
            "num_workers": len(self.workers),
            "num_nodes": len(set(self.worker_nodes)),
            "worker_restarts": self.counters.worker_restarts,
            "learner": {key: float(np.mean(values)) for key, values in self._learner_stats.items()},
        }
        self.metrics.write(record)
        self._last_report = now
        self._last_report_steps = self.counters.env_steps
        self._learner_stats = {}
        self._lags = []

    def _checkpoint(self) -> Path:
        try:
            state = ray.get(self.learner.get_state.remote())
        except RayActorError as error:
            raise self._learner_died(error) from None
        # The learner's version counts every update it applied, also one this driver has
        # not collected yet (after Ctrl-C with an update in flight).
        self.counters.learner_updates = int(state["version"])
        state["counters"] = asdict(self.counters)
        state["recent_returns"] = list(self.recent_returns)
        state["recent_lengths"] = list(self.recent_lengths)
        path = checkpoint.save(
            self.out_dir / "checkpoints",
            self.counters.learner_updates,
            state,
            self.config.to_yaml(),
            self.config.output.keep_checkpoints,
        )
        self._last_checkpoint = time.monotonic()
        return path

    # ---------------------------------------------------------------- main

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
        runtime = self.config.runtime
        started_ray = False
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            wanted = runtime.num_cpus_per_learner + (
                0 if runtime.num_workers == "auto" else runtime.num_workers * runtime.num_cpus_per_worker
            )
            started_ray = cluster.connect(runtime.address, wanted)
            self._start()
            self._time_base = self.counters.time_s
            self._started = self._last_report = self._last_checkpoint = time.monotonic()
            self._last_report_steps = self.counters.env_steps
            try:
                if self.spec.data_flow == "fragments":
                    reason = self._train_on_fragments()
                else:  # pragma: no cover - every registered algorithm names a known flow
                    raise DistrlError(f"Unknown data flow {self.spec.data_flow!r} for {self.config.algo}.")
            except KeyboardInterrupt:
                self.counters.time_s = self._elapsed()
                path = self._checkpoint()
                self.metrics.message(f"interrupted; checkpoint written to {path}")
                raise
            self.metrics.message(f"stopped: {reason}; checkpoint in {checkpoint.latest(out)}")
            return reason
        finally:
            signal.signal(signal.SIGTERM, previous_sigterm)
            self.metrics.close()
            if started_ray:
                ray.shutdown()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
