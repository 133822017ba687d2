"""The synchronous flow: one fragment from every worker, then one update on all of them.

    driver: ask every worker for a fragment -> wait for all -> learner.update(refs) -> repeat

With ``overlap_sampling`` the workers already sample the next round while the learner
updates, so a fragment is at most one version old (its behaviour log-probabilities, recorded
by the worker, keep importance ratios right)."""

from __future__ import annotations

import time
from typing import Any, Generator

import numpy as np

from distrl.algos.interface import Progress, SynchronousSettings
from distrl.runtime.flows.base import Driving, Flow, Update, fetch_surviving
from distrl.runtime.fragment import collate
from distrl.runtime.learner import Learner, LearnerSide, UpdateReport
from distrl.runtime.worker_pool import SAMPLE


class LearnFromFragments:
    """The learner side of the fragment flows: fetch the fragments (skipping any lost with
    their node), concatenate them along the env axis, and call the algorithm's ``learn``."""

    broadcast = True

    def update(self, learner: Learner, fragment_refs: list[Any], progress: Progress) -> UpdateReport:
        clock = time.perf_counter
        start = clock()
        fragments, lost = fetch_surviving(fragment_refs)
        fetched = clock()
        if not fragments:
            return UpdateReport(updates=0, lost_fragments=lost, phases={"transfer": fetched - start})
        lags = [learner.version - int(fragment["policy_version"]) for fragment in fragments]
        batch = collate(fragments, learner.device)
        collated = clock()
        update = learner.algorithm.learn(batch, progress)
        # Where an update's time goes: the fragments' transfer from the workers (pulled from
        # the object store), stacking them, learning (runtime/phases.py).
        phases = {"transfer": fetched - start, "collate": collated - fetched, "update": clock() - collated}
        return UpdateReport(
            stats=update.stats,
            phases=phases,
            consumed_steps=sum(fragment["rewards"].size for fragment in fragments),
            policy_lag=float(np.mean(lags)),
            lost_fragments=lost,
        )


class SynchronousFlow(Flow):
    settings: SynchronousSettings

    def learner_side(self) -> LearnerSide:
        return LearnFromFragments()

    def workers_busy_during_updates(self) -> bool:
        # At most one fragment each per update, even with overlap_sampling. Measured on Pong
        # (PPO, 1024-step batches, 2 cores, overlap, 1 worker x 8 envs): 0.56 of the learner's
        # ceiling with 1 learner thread, 0.72 with 2 (BENCHMARKS.md, 2026-11-22 evening).
        return False

    def updates(self, driving: Driving) -> Generator[Update, None, None]:
        pool, learner, counters = driving.pool, driving.learner, driving.tally.counters
        overlap = self.settings.overlap_sampling
        update_ref, update_steps = None, 0
        # With overlap, the weights a round samples with are those published before the
        # update in flight, even when the driver waited for that update (for a report, a
        # checkpoint): always one version behind, so what is learned does not depend on
        # when a timed duty fell due, and a seeded run repeats on a slower or busier machine.
        behind: Any = None
        while True:
            fragments: dict[int, Any] = {}
            steps = 0
            weights = behind if behind is not None else learner.latest_weights
            behind = None
            while set(pool.workers) - set(fragments):
                # Ask only the workers that owe this round's fragment (a replacement too); one
                # that delivered waits for the new weights.
                for worker_id in set(pool.workers) - set(fragments):
                    if not pool.inflight_of(worker_id):
                        pool.submit(worker_id, SAMPLE, weights)
                worker_id, summary, fragment_ref = pool.receive(driving.wait(pool.pending()))
                if summary is not None:
                    fragments[worker_id] = fragment_ref
                    steps += summary["env_steps"]
            if update_ref is not None:  # the previous round's, which overlapped this one's sampling
                report = learner.result(driving.wait([update_ref]), update_steps)
                yield Update(report, update_steps, steps, duties=False)
            update_ref = learner.submit([fragments[i] for i in sorted(fragments)], counters.env_steps)
            update_steps = steps
            # The learner's task holds the fragments now; dropping our refs frees them as soon
            # as it is done, which keeps the object store flat.
            del fragments
            if not overlap or driving.due():
                # Reports, checkpoints and the stop decision count finished updates only.
                # Blocked on the learner: the driver's wait, as on the workers above.
                published = learner.latest_weights
                report = learner.result(driving.wait([update_ref]), update_steps)
                if overlap and report is not None:  # (a restored learner publishes afresh)
                    behind = published
                yield Update(report, update_steps)
                update_ref = None
            else:
                yield Update(None, waiting_steps=update_steps)  # in the update in flight
