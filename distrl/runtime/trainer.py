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
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

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
NODE_VERDICT_S = 30.0  # how long to wait for the cluster to say whether a silent node died


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
        # Rollout workers by id. Every worker ever created gets a new id, replacements too, so
        # its env copies are new replay streams and new seeds.
        self.workers: dict[int, Any] = {}
        self.worker_nodes: dict[int, str] = {}
        self.next_worker_id = 0
        self.replay_shards: list[Any] = []
        # Requests out with workers: summary ref -> (worker id, worker handle, fragment ref).
        self.inflight: dict[Any, tuple[int, Any, Any]] = {}
        self.restarts_this_run = 0
        self.failures_in_a_row = 0
        self._learner_stats: dict[str, list[float]] = {}
        self._lags: list[float] = []
        self._asked_autoscaler = False

    # ---------------------------------------------------------------- set-up

    @property
    def elastic(self) -> bool:
        return self.config.runtime.num_workers == "auto"

    def _num_workers(self) -> int:
        """A fixed count, or (``auto``) as many as fit on the nodes' CPUs next to the learner,
        up to ``runtime.max_workers``."""
        runtime = self.config.runtime
        if not self.elastic:
            return int(runtime.num_workers)
        reserve = runtime.num_cpus_per_learner if not self._learner_gpus() else 0.0
        count = max(1, cluster.worker_slots(runtime.num_cpus_per_worker, free_only=False, head_reserve=reserve))
        return min(count, runtime.max_workers) if runtime.max_workers else count

    def _learner_gpus(self) -> float:
        wanted = self.config.runtime.num_gpus_per_learner
        if wanted == "auto":
            return 1.0 if cluster.cluster_gpus() >= 1 else 0.0
        return float(wanted)

    def _create_worker(self) -> int:
        """A new rollout worker (not yet set up); returns its id."""
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        # A new seed for every worker ever created, so a replacement does not replay its
        # predecessor's episodes; a resumed run continues from different seeds too.
        seed = self.config.seed * 1_000_003 + 10_007 * worker_id + self.counters.learner_updates
        self.workers[worker_id] = RolloutWorker.options(
            num_cpus=self.config.runtime.num_cpus_per_worker,
            scheduling_strategy="SPREAD",
        ).remote(worker_id, self.config, self.parameter_server, seed, self.replay_shards)
        return worker_id

    def _setup_workers(
        self, worker_ids: list[int], patience_s: Optional[float] = None, need_one: bool = False
    ) -> list[dict[str, Any]]:
        """Build the envs of these workers. Waits for the cluster to place them (telling the
        user every 30 s), or, with ``patience_s``, gives up on those not placed by then:
        they are removed and [] stands for each in the result. With ``need_one`` it waits
        on until at least one is placed (a cluster that is still growing)."""
        refs = [self.workers[worker_id].setup.remote() for worker_id in worker_ids]
        waited = 0.0
        while True:
            left = None if patience_s is None else patience_s - waited
            step = 30.0 if left is None or left <= 0 else max(0.1, min(30.0, left))
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=step)
            waited += step
            if len(ready) == len(refs):
                break
            if patience_s is not None and waited >= patience_s and (ready or not need_one):
                break
            self.metrics.message(
                f"waiting for resources: {len(refs) - len(ready)} of {len(refs)} rollout workers not "
                f"placed after {waited:.0f}s (each needs {self.config.runtime.num_cpus_per_worker} CPU; "
                f"the cluster has {cluster.cluster_cpus():.0f} CPUs)"
            )
        infos = []
        for worker_id, ref in zip(worker_ids, refs):
            try:
                info = ray.get(ref, timeout=0) if ref in ready else None
            except RayTaskError as error:
                raise task_failure(error, f"A rollout worker could not build {self.config.env.id!r}") from None
            except RayActorError:
                info = None  # its node went away while it started
            if info is None:
                self._forget_worker(worker_id)
            else:
                self.worker_nodes[worker_id] = info["node_id"]
            infos.append(info or {})
        return infos

    def _create_replay(self, num_workers: int) -> list[Any]:
        """The DQN family's replay shards. Env copy k of worker w is stream w * K + k, and a
        stream always goes to shard (stream % shards)."""
        from distrl.envs import frame_stack_of
        from distrl.runtime.replay import ReplayBuffer

        cfg = self.config.algo_config
        streams = num_workers * self.config.runtime.envs_per_worker
        shards = []
        for index in range(cfg.replay_shards):
            expected = len(range(index, streams, cfg.replay_shards))
            shards.append(
                ReplayBuffer.options(**cluster.on_head_node()).remote(
                    cfg.replay_capacity // cfg.replay_shards, expected,
                    frame_stack_of(self.config.env.id, self.config.env.options), cfg.n_step, cfg.gamma,
                    cfg.reward_clip, cfg.prioritized, cfg.priority_alpha, self.config.seed + index,
                )
            )
        return shards

    def _start(self) -> None:
        runtime = self.config.runtime
        flow = self.spec.data_flow
        head = cluster.on_head_node()
        self.parameter_server = ParameterServer.options(**head).remote()
        num_workers = self._num_workers()
        self.replay_shards = self._create_replay(num_workers) if flow == "replay" else []
        if flow != "gradients":  # A3C's parameter server is its learner
            gpus = self._learner_gpus()
            # A GPU learner goes wherever the GPU is; a CPU learner stays on the head node.
            # Created before the workers so that its CPU on the head is taken first; its
            # process still starts while the workers build their environments.
            self.learner = Learner.options(
                num_cpus=runtime.num_cpus_per_learner, num_gpus=gpus, **({} if gpus else head)
            ).remote(self.config, self.parameter_server, self.replay_shards)
        self._ask_autoscaler()  # a cluster launched from a YAML starts growing now
        worker_ids = [self._create_worker() for _ in range(num_workers)]
        # "auto" counted CPUs that another run may hold: start with the workers that fit
        # (but wait for the first, which may need a node the autoscaler is starting).
        patience = self.config.runtime.placement_patience_s if self.elastic else None
        infos = [info for info in self._setup_workers(worker_ids, patience_s=patience, need_one=True) if info]
        if not infos:
            raise DistrlError("No rollout worker could be placed on the cluster.")
        spaces = (infos[0]["observation_space"], infos[0]["action_space"])
        try:
            if flow == "gradients":
                self.learner = self.parameter_server
                device = ray.get(self.parameter_server.setup.remote(self.config, *spaces))
            else:
                device = ray.get(self.learner.setup.remote(*spaces))
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
            f"distrl: {self.config.algo} on {self.config.env.id}: {len(self.workers)} rollout workers x "
            f"{runtime.envs_per_worker} envs on {len(set(self.worker_nodes.values()))} node(s), learner on "
            f"{device}; output in {self.out_dir}"
        )
        self._last_rescale = time.monotonic()

    # ---------------------------------------------------------------- workers

    def _forget_worker(self, worker_id: int) -> None:
        handle = self.workers.pop(worker_id, None)
        self.worker_nodes.pop(worker_id, None)
        if handle is not None:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass  # already gone

    def _replace_worker(self, worker_id: int, error: BaseException) -> None:
        """A worker failed: with ``num_workers: auto`` and its node gone, the run shrinks;
        otherwise a new worker (new id, new seed) takes its place."""
        reason = first_line(error)
        node = self.worker_nodes.get(worker_id)
        self._forget_worker(worker_id)
        if self.elastic and node is not None and self._node_left(node, error):
            self.metrics.message(f"rollout worker {worker_id} left with its node; {len(self.workers)} remain")
            return
        self.counters.worker_restarts += 1
        self.restarts_this_run += 1
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
        new_id = self._create_worker()
        self._setup_workers([new_id], patience_s=self.config.runtime.placement_patience_s if self.elastic else None)
        if new_id in self.workers:
            self.metrics.message(
                f"rollout worker {worker_id} failed ({reason}); worker {new_id} replaced it "
                f"({self.counters.worker_restarts} restart(s) so far)"
            )
        if not self.workers:
            raise DistrlError(f"Every rollout worker is gone (the last: {reason}); the cluster has no room for new ones.")

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

    def _rescale(self) -> None:
        """``num_workers: auto``: add workers when nodes joined (the cluster has CPUs to spare).
        Workers on nodes that left are dropped as their requests fail (``_replace_worker``)."""
        now = time.monotonic()
        if not self.elastic or now - self._last_rescale < self.config.runtime.elastic_check_s:
            return
        self._last_rescale = now
        runtime = self.config.runtime
        # Free CPUs only: this run's own actors and other runs already hold theirs.
        missing = cluster.worker_slots(runtime.num_cpus_per_worker, free_only=True)
        if runtime.max_workers:
            missing = min(missing, runtime.max_workers - len(self.workers))
        if missing <= 0:
            return
        added = [self._create_worker() for _ in range(missing)]
        self._setup_workers(added, patience_s=min(30.0, self.config.runtime.placement_patience_s))
        placed = [worker_id for worker_id in added if worker_id in self.workers]
        if placed:
            self.metrics.message(
                f"cluster grew: {len(placed)} rollout worker(s) added, {len(self.workers)} on "
                f"{len(set(self.worker_nodes.values()))} node(s)"
            )
        # Count the next interval from now; after CPUs that were not there after all (taken
        # meanwhile), wait longer before trying again.
        self._last_rescale = time.monotonic() + (0.0 if len(placed) == len(added) else 30.0)

    def _ask_autoscaler(self) -> None:
        """With ``num_workers: auto`` and ``runtime.max_workers``, ask the autoscaler for the
        CPUs of that many workers plus the learner, so a cluster launched from a YAML grows."""
        runtime = self.config.runtime
        if self.elastic and runtime.max_workers:
            bundles = [{"CPU": runtime.num_cpus_per_worker}] * runtime.max_workers
            if runtime.num_cpus_per_learner:
                bundles.append({"CPU": runtime.num_cpus_per_learner})
            cluster.request_cpus(bundles)
            self._asked_autoscaler = True

    def _progress(self, worker_id: int) -> dict[str, int]:
        return {
            "env_steps": self.counters.env_steps,
            "num_workers": len(self.workers),
            "rank": list(self.workers).index(worker_id),  # ids only grow: insertion order is sorted
        }

    def _submit(self, worker_id: int) -> None:
        """Ask a worker for its next piece of work, in the algorithm's data flow."""
        worker = self.workers[worker_id]
        flow = self.spec.data_flow
        progress = self._progress(worker_id)
        fragment_ref = None
        if flow in ("fragments", "stream"):
            fragment_ref, summary_ref = worker.sample.remote(progress)
        elif flow == "replay":
            summary_ref = worker.sample_to_replay.remote(progress)
        else:
            summary_ref = worker.a3c_step.remote(progress)
        self.inflight[summary_ref] = (worker_id, worker, fragment_ref)

    def _inflight_of(self, worker_id: int) -> int:
        return sum(1 for i, _, _ in self.inflight.values() if i == worker_id)

    def _top_up(self, depth: int) -> None:
        """Give every worker ``depth`` requests to work on."""
        for worker_id in list(self.workers):
            while self._inflight_of(worker_id) < depth:
                self._submit(worker_id)

    def _receive(self, summary_ref: Any) -> tuple[int, Optional[dict[str, Any]], Any]:
        """The summary of a finished request, counted; ``None`` if the worker failed (it is
        replaced or dropped, once, however many of its requests fail with it)."""
        worker_id, worker, fragment_ref = self.inflight.pop(summary_ref)
        try:
            summary = ray.get(summary_ref)
        except (RayActorError, RayTaskError) as error:
            if self.workers.get(worker_id) is worker:
                self._replace_worker(worker_id, error)
            return worker_id, None, None
        self.failures_in_a_row = 0
        self._count_fragment(summary)
        return worker_id, summary, fragment_ref

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
            f"The learner process died (its process was killed or its node left the cluster); the run "
            f"cannot go on without it. {where[0].upper() + where[1:]}."
        )

    def _finish_update(self, update_ref: Any) -> None:
        try:
            stats = ray.get(update_ref)
        except RayActorError as error:
            raise self._learner_died(error) from None
        except RayTaskError as error:
            raise task_failure(error, "The learner's update failed") from None
        lost = stats.pop("lost_fragments", 0)
        if lost:
            self.metrics.message(f"{lost} fragment(s) were lost with their node; the update used the others")
        if stats.pop("no_update", False):
            return  # every fragment of this update was lost: nothing learned, nothing to record
        self._record_update(stats, stats.pop("gradient_steps", 1) if self.spec.data_flow == "replay" else 1)

    def _record_update(self, stats: dict[str, Any], updates: int) -> None:
        self.counters.learner_updates += int(updates)
        self._lags.append(stats.pop("policy_lag"))
        stats.pop("learner_version", None)
        for key, value in stats.items():
            if isinstance(value, (int, float)):
                self._learner_stats.setdefault(key, []).append(float(value))

    # ---------------------------------------------------------------- data flows

    def _train_on_fragments(self) -> str:
        """PPO/A2C/Q-learning: one fragment from every worker, then one update. With
        ``async_sampling`` the workers already sample the next round during the update."""
        overlap = bool(getattr(self.config.algo_config, "async_sampling", False))
        update_ref = None
        while True:
            fragments: dict[int, Any] = {}
            while set(self.workers) - set(fragments):
                # Ask only the workers that owe this round's fragment (a replacement too);
                # one that delivered waits for the new weights.
                for worker_id in set(self.workers) - set(fragments):
                    if not self._inflight_of(worker_id):
                        self._submit(worker_id)
                ready, _ = ray.wait(list(self.inflight), num_returns=1)
                worker_id, summary, fragment_ref = self._receive(ready[0])
                if summary is not None:
                    fragments[worker_id] = fragment_ref
            if update_ref is not None:
                self._finish_update(update_ref)
            update_ref = self.learner.update.remote([fragments[i] for i in sorted(fragments)], self.counters.env_steps)
            # The learner's task holds the fragments now; dropping our refs frees them as
            # soon as it is done, which keeps the object store flat.
            del fragments
            if not overlap or self._bookkeeping_due():
                # Reports, checkpoints and the stop decision count finished updates only.
                self._finish_update(update_ref)
                update_ref = None
            reason = self._after_update()
            if reason:
                return reason

    def _train_on_stream(self) -> str:
        """IMPALA/APPO: every worker keeps ``max_inflight_fragments`` requests queued, so it
        samples without pause; the learner takes fragments in arrival order. At most one
        batch waits for the learner: past that, workers idle instead of filling memory."""
        cfg = self.config.algo_config
        depth = self.config.runtime.max_inflight_fragments
        waiting: list[Any] = []
        update_ref = None
        while True:
            per_update = cfg.fragments_per_update or len(self.workers)
            if len(waiting) < per_update:
                self._top_up(depth)
            ready, _ = ray.wait(list(self.inflight) + ([update_ref] if update_ref else []), num_returns=1)
            if update_ref is not None and ready[0] == update_ref:
                self._finish_update(update_ref)
                update_ref = None
                reason = self._after_update()
                if reason:
                    return reason
            else:
                _, summary, fragment_ref = self._receive(ready[0])
                if summary is not None:
                    waiting.append(fragment_ref)
            if update_ref is None and len(waiting) >= per_update:
                batch, waiting = waiting[:per_update], waiting[per_update:]
                update_ref = self.learner.update.remote(batch, self.counters.env_steps)
                del batch

    def _train_with_gradients(self) -> str:
        """A3C: each worker samples, computes its gradient and pushes it to the
        ParameterServer on its own schedule; whoever finishes is sent off again at once."""
        while True:
            self._top_up(1)
            ready, _ = ray.wait(list(self.inflight), num_returns=1)
            _, summary, _ = self._receive(ready[0])
            if summary is None:
                continue
            self._record_update({**summary["learner"], "policy_lag": summary["policy_lag"]}, 1)
            reason = self._after_update()
            if reason:
                return reason

    def _train_with_replay(self) -> str:
        """DQN: workers write to replay; the learner trains on samples from it, one call of
        up to ``updates_per_call`` gradient steps at a time, to keep the replay ratio
        (sampled transitions per collected env step). Workers pause when the learner is
        more than a call behind, so the ratio holds whatever the speeds."""
        cfg = self.config.algo_config
        depth = self.config.runtime.max_inflight_fragments
        per_call = 50
        update_ref = None
        # Replay is not checkpointed: a resumed run refills it before learning again, and its
        # replay ratio counts from here.
        start_steps, start_updates = self.counters.env_steps, self.counters.learner_updates
        learning_starts = start_steps + cfg.learning_starts
        requested = 0
        while True:
            due = (self.counters.env_steps - learning_starts) * cfg.replay_ratio / cfg.batch_size
            owed = due - (self.counters.learner_updates - start_updates) - requested
            if owed < 2 * per_call:
                self._top_up(depth)
            if update_ref is None and self.counters.env_steps >= learning_starts and owed >= 1:
                requested = int(min(owed, per_call))
                update_ref = self.learner.train_from_replay.remote(requested, self.counters.env_steps)
            waitable = list(self.inflight) + ([update_ref] if update_ref else [])
            ready, _ = ray.wait(waitable, num_returns=1)
            if update_ref is not None and ready[0] == update_ref:
                self._finish_update(update_ref)  # counts the steps actually taken
                update_ref, requested = None, 0
                reason = self._after_update()
                if reason:
                    return reason
            else:
                self._receive(ready[0])
                if update_ref is None and self.counters.env_steps < learning_starts:
                    reason = self._after_update()  # reports and stop rules while replay fills
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
        self._rescale()
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
            "num_nodes": len(set(self.worker_nodes.values())),
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
        # The learner counts every update it applied, also one this driver has not
        # collected yet (after Ctrl-C with an update in flight).
        self.counters.learner_updates = int(state["updates"])
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
            flows = {
                "fragments": self._train_on_fragments,
                "stream": self._train_on_stream,
                "gradients": self._train_with_gradients,
                "replay": self._train_with_replay,
            }
            try:
                reason = flows[self.spec.data_flow]()
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
            if self._asked_autoscaler:
                try:
                    cluster.withdraw_cpu_request()  # let the cluster shrink back after the run
                except Exception:
                    pass  # the cluster is gone already
            if started_ray:
                ray.shutdown()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
