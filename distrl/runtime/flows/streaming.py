"""The streaming flow: workers sample without pause and the learner takes fragments in
arrival order, correcting for their lag (V-trace).

    every worker keeps ``max_inflight_fragments`` requests queued
    driver: on a fragment -> queue it; on ``fragments_per_update`` queued and the learner
            idle -> learner.update(refs)

At most one batch waits for the learner: past that, workers idle instead of filling memory."""

from __future__ import annotations

from typing import Any, Generator

from distrl.algos.interface import StreamingSettings
from distrl.runtime.flows.base import Driving, Flow, Update
from distrl.runtime.flows.synchronous import LearnFromFragments
from distrl.runtime.learner import LearnerSide
from distrl.runtime.worker_pool import SAMPLE


class StreamingFlow(Flow):
    settings: StreamingSettings

    def learner_side(self) -> LearnerSide:
        return LearnFromFragments()

    def updates(self, driving: Driving) -> Generator[Update, None, None]:
        pool, learner, counters = driving.pool, driving.learner, driving.tally.counters
        depth = self.config.runtime.max_inflight_fragments
        waiting: list[tuple[Any, int]] = []  # (fragment ref, its env steps)
        update_ref, update_steps = None, 0
        while True:
            per_update = self.settings.fragments_per_update or pool.size
            if len(waiting) < per_update:
                pool.top_up(depth, SAMPLE, learner.latest_weights)
            ready = driving.wait(pool.pending() + ([update_ref] if update_ref else []))
            if update_ref is not None and ready == update_ref:
                report = learner.result(update_ref, update_steps)
                update_ref = None
                yield Update(report, update_steps, sum(steps for _, steps in waiting))
            else:
                _, summary, fragment_ref = pool.receive(ready)
                if summary is not None:
                    waiting.append((fragment_ref, summary["env_steps"]))
            if update_ref is None and len(waiting) >= per_update:
                batch, waiting = waiting[:per_update], waiting[per_update:]
                update_steps = sum(steps for _, steps in batch)
                update_ref = learner.submit([ref for ref, _ in batch], counters.env_steps)
                del batch
