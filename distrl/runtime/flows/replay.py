"""The replay flow (Ape-X, Horgan et al. 2018): workers write transitions with initial
priorities to replay shards; the learner samples batches by priority, takes gradient steps
and sends the new priorities back.

    worker: pull weights -> sample -> write its streams to their shards (waits for the last write)
    driver: keep workers sampling while the learner is less than two calls behind the replay
            ratio; learner.update(k) -> k gradient steps on sampled batches

The replay ratio (sampled transitions per collected env step) holds whatever the speeds:
workers pause when the learner falls behind, and the learner is asked only for the steps
that are owed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Generator

import numpy as np
import torch

from distrl.algos.interface import AlgorithmSpec, Progress, ReplaySettings
from distrl.envs import frame_stack_of
from distrl.runtime import backend, cluster
from distrl.runtime.flows.base import Driving, Flow, Update
from distrl.runtime.fragment import replay_columns
from distrl.runtime.learner import Learner, LearnerSide, UpdateReport
from distrl.runtime.replay import ReplayBuffer, global_weights
from distrl.runtime.rollout_worker import Request, RolloutWorker, WorkerTask
from distrl.runtime.worker_pool import WORK

# Gradient steps per learner call: enough to pay for the round trip many times over, few
# enough that the driver sees progress (reports, stop rules) several times a second.
STEPS_PER_CALL = 50
# Replay batches fetched per round trip to a shard.
BATCHES_PER_FETCH = 8
# What the learner's batch takes of a shard's sample.
BATCH_KEYS = ("obs", "actions", "rewards", "terminated", "truncated", "next_obs", "cut", "cut_value")


@dataclass
class WriteToReplay:
    """The worker side. Each env copy is one stream and always goes to the same shard
    (stream % shards), so a stream's frames stay in order there. Only what replay stores
    travels. A worker sends its next fragment only once the shards stored the previous one,
    so a slow shard slows the workers instead of filling memory."""

    shards: list[Any]
    frame_stack: int
    pending: list[Any] = field(default_factory=list)

    def run(self, worker: RolloutWorker, request: Request) -> dict[str, Any]:
        fragment, summary = worker.rollout(request)
        began = time.perf_counter()
        backend.get(self.pending)
        stored = replay_columns(fragment, self.frame_stack)
        K = fragment["rewards"].shape[1]
        streams = [worker.worker_id * K + k for k in range(K)]
        self.pending = []
        for index, shard in enumerate(self.shards):
            columns = [k for k, stream in enumerate(streams) if stream % len(self.shards) == index]
            if columns:
                part = {key: value[:, columns] for key, value in stored.items()}
                self.pending.append(shard.add.remote([streams[k] for k in columns], part))
        # The wait for the shards to store the previous fragment, and this one's hand-over.
        summary["phases"]["replay_insert"] = time.perf_counter() - began
        return summary


@dataclass
class LearnFromReplay:
    """The learner side: ``steps`` gradient steps on batches sampled from the shards, the new
    priorities sent back after each. Batches come ``BATCHES_PER_FETCH`` per round trip, and
    the next fetch is requested before the current one is trained on, so sampling overlaps
    learning."""

    shards: list[Any]
    settings: ReplaySettings
    shard_totals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    broadcast = True

    def _request(self, count: int, beta: float) -> list[Any]:
        # Each shard gives its share of the batch in proportion to its total priority (as last
        # reported), so that the batch is one draw over all shards.
        totals = self.shard_totals if len(self.shard_totals) == len(self.shards) else np.ones(len(self.shards))
        shares = np.maximum(1, np.round(self.settings.batch_size * totals / totals.sum())).astype(int)
        return [shard.sample_batches.remote(int(n), beta, count) for shard, n in zip(self.shards, shares)]

    def update(self, learner: Learner, steps: int, progress: Progress) -> UpdateReport:
        if learner.shard.rank > 0:
            return self._follow(learner, progress)
        try:
            return self._sample_and_learn(learner, steps, progress)
        finally:
            learner.shard.share(None)  # the other learners' update ends here too

    def _follow(self, learner: Learner, progress: Progress) -> UpdateReport:
        """A learner other than the first: it takes its share of each batch the first one
        sampled (algos/parallel.py), until that one says the update is over."""
        totals: dict[str, float] = {}
        taken = consumed = 0
        clock = time.perf_counter
        phases = {"replay_sample": 0.0, "update": 0.0}
        while True:
            before_sample = clock()
            arrays = learner.shard.share(None)
            before_update = clock()
            phases["replay_sample"] += before_update - before_sample
            if arrays is None:
                break
            batch = {key: torch.from_numpy(value).to(learner.device) for key, value in arrays.items()}
            update = learner.algorithm.learn(batch, progress)
            phases["update"] += clock() - before_update
            for key, value in update.stats.items():
                totals[key] = totals.get(key, 0.0) + value
            taken += 1
            consumed += len(batch["actions"])
        stats = {key: value / max(taken, 1) for key, value in totals.items()}
        return UpdateReport(stats=stats, updates=taken, consumed_steps=consumed, phases=phases)

    def _sample_and_learn(self, learner: Learner, steps: int, progress: Progress) -> UpdateReport:
        beta = self.settings.priority_beta(progress.env_steps)
        totals: dict[str, float] = {}
        lags: list[float] = []
        taken = consumed = 0
        remaining = steps
        clock = time.perf_counter
        phases = {"replay_sample": 0.0, "collate": 0.0, "update": 0.0}
        pending = self._request(min(BATCHES_PER_FETCH, remaining), beta)
        while remaining > 0:
            before_sample = clock()
            chunks = backend.get(pending)
            phases["replay_sample"] += clock() - before_sample
            count = min(BATCHES_PER_FETCH, remaining)
            remaining -= count
            if remaining > 0:
                pending = self._request(min(BATCHES_PER_FETCH, remaining), beta)
            if all(chunk is None for chunk in chunks):
                break  # nothing sampleable yet
            self.shard_totals = np.array([chunk[-1]["total"] if chunk else 0.0 for chunk in chunks]) + 1e-12
            for j in range(count):
                before_collate = clock()
                parts = [(shard, chunk[j]) for shard, chunk in zip(self.shards, chunks) if chunk is not None]
                arrays = {key: np.concatenate([part[key] for _, part in parts]) for key in BATCH_KEYS}
                arrays["weights"] = global_weights([part for _, part in parts], beta)
                learner.shard.share(arrays)  # with several learners, each takes its share of it
                batch = {key: torch.from_numpy(value).to(learner.device) for key, value in arrays.items()}
                before_update = clock()
                phases["collate"] += before_update - before_collate
                update = learner.algorithm.learn(batch, progress)
                phases["update"] += clock() - before_update
                assert update.priorities is not None, "a replay algorithm's learn must return new priorities"
                offset = 0
                for shard, part in parts:
                    size = len(part["leaves"])
                    shard.update_priorities.remote(
                        part["leaves"], part["absolute"], update.priorities[offset : offset + size]
                    )
                    offset += size
                    lags.append(float(np.mean(learner.version - part["policy_version"])))
                for key, value in update.stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                taken += 1
                consumed += len(batch["actions"])
        stats = {key: value / max(taken, 1) for key, value in totals.items()}
        return UpdateReport(
            stats=stats,
            updates=taken,
            consumed_steps=consumed,
            policy_lag=float(np.mean(lags)) if lags else 0.0,
            phases=phases,
        )


class ReplayFlow(Flow):
    settings: ReplaySettings

    def __init__(self, config: Any, spec: AlgorithmSpec, settings: ReplaySettings):
        super().__init__(config, spec, settings)
        self.frame_stack = frame_stack_of(config.env.id, config.env.options)
        self.shards: list[Any] = []  # the replay shards, from create_actors()

    def create_actors(self, num_workers: int) -> None:
        """The shards, on the head node. Env copy k of worker w is stream w * K + k, and a
        stream always goes to shard (stream % shards)."""
        settings = self.settings
        streams = num_workers * self.config.runtime.envs_per_worker
        self.shards = [
            # A shard whose process dies is restarted empty and calls to it are retried there.
            backend.actor(ReplayBuffer)
            .options(
                max_restarts=self.config.runtime.max_learner_restarts, max_task_retries=-1, **cluster.on_head_node()
            )
            .remote(
                settings.capacity // settings.shards,
                len(range(index, streams, settings.shards)),
                self.frame_stack,
                settings.n_step,
                settings.prioritized,
                settings.priority_alpha,
                self.config.seed + index,
            )
            for index in range(settings.shards)
        ]

    def learner_side(self) -> LearnerSide:
        return LearnFromReplay(self.shards, self.settings)

    def restartable_actors(self) -> dict[str, list[Any]]:
        return {"replay_shard": self.shards}

    def worker_task(self, learner: Any) -> WorkerTask:
        return WriteToReplay(self.shards, self.frame_stack)

    def updates(self, driving: Driving) -> Generator[Update, None, None]:
        settings = self.settings
        pool, learner, counters = driving.pool, driving.learner, driving.tally.counters
        depth = self.config.runtime.max_inflight_fragments
        update_ref = None
        # Replay is not checkpointed: a resumed run refills it before learning again, and its
        # replay ratio counts from here.
        start_steps, start_updates = counters.env_steps, counters.learner_updates
        learning_starts = start_steps + settings.learning_starts
        requested = 0
        while True:
            due = (counters.env_steps - learning_starts) * settings.replay_ratio / settings.batch_size
            owed = due - (counters.learner_updates - start_updates) - requested
            if owed < 2 * STEPS_PER_CALL:
                pool.top_up(depth, WORK, learner.latest_weights)
            if update_ref is None and counters.env_steps >= learning_starts and owed >= 1:
                requested = int(min(owed, STEPS_PER_CALL))
                update_ref = learner.submit(requested, counters.env_steps)
            ready = driving.wait(pool.pending() + ([update_ref] if update_ref else []))
            if update_ref is not None and ready == update_ref:
                report = learner.result(update_ref)  # counts the steps actually taken
                update_ref, requested = None, 0
                yield Update(report)
            else:
                pool.receive(ready)
                if update_ref is None and counters.env_steps < learning_starts:
                    yield Update(None)  # reports and stop rules while replay fills
