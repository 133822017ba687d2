"""Each data flow on real Ray actors and CartPole, for a few seconds: the env steps the driver
counts are the steps the learner learned from (or replay stored), versions only go up by one
per update, and the policy lag is reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray

from distrl.algos import ALGORITHMS
from distrl.config import resolve
from distrl.runtime.flows import FLOWS, flow_for
from distrl.runtime.flows.replay import STEPS_PER_CALL
from distrl.runtime.learner import UpdateReport
from distrl.runtime.tally import Tally
from distrl.runtime.trainer import Trainer

T, K, WORKERS = 8, 2, 2


class RecordingBook(Tally):
    """The run's tally that also keeps every update report the trainer counts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reports: list[UpdateReport] = []

    def update(self, report: UpdateReport, sent_steps: int | None = None) -> None:
        self.reports.append(report)
        super().update(report, sent_steps)


def run_flow(tmp_path: Path, algo: str, env_steps: int, **sections):
    """The trainer's run on the test's Ray, with a tally that keeps every report; returns
    the tally, the flow (its actors) and the learner's state after the run."""
    config = resolve(
        {
            "algo": algo,
            "seed": 3,
            "runtime": {"num_workers": WORKERS, "envs_per_worker": K, "fragment_length": T},
            "stop": {"env_steps": env_steps},
            "output": {"console": "off", "tensorboard": False},
            **sections,
        }
    )
    trainer = Trainer(config, tmp_path)
    book = trainer.tally = RecordingBook(config)
    reason = trainer.run()
    assert reason.startswith("env_steps")
    assert trainer.tally.counters.learner_restarts == 0, "the learner died during a flow test"
    return book, trainer.flow, ray.get(trainer.learner.actor.get_state.remote())


def assert_versions_go_up_by_one(reports: list[UpdateReport]) -> None:
    versions = [report.version for report in reports if report.updates]
    assert versions == list(range(1, len(versions) + 1)), versions


def test_synchronous_flow_learns_from_every_counted_step(ray_local, tmp_path):
    book, _, state = run_flow(tmp_path, "a2c", 2000)
    counted = book.counters.env_steps
    assert counted >= 2000 and counted % (WORKERS * T * K) == 0
    assert book.counters.fragments * T * K == counted  # the driver's unit of work, counted once each
    # Every fragment counted went into exactly one update, one fragment per worker each time.
    assert sum(report.consumed_steps for report in book.reports) == counted
    assert {report.consumed_steps for report in book.reports} == {WORKERS * T * K}
    assert_versions_go_up_by_one(book.reports)
    assert state["version"] == len(book.reports) == book.counters.learner_updates
    assert all(report.policy_lag == 0.0 for report in book.reports)  # lock-step: never behind


def test_synchronous_flow_with_overlap_is_at_most_one_version_behind(ray_local, tmp_path):
    book, _, _ = run_flow(tmp_path, "ppo", 3000, ppo={"async_sampling": True, "epochs": 1})
    assert sum(report.consumed_steps for report in book.reports) == book.counters.env_steps
    assert_versions_go_up_by_one(book.reports)
    lags = [report.policy_lag for report in book.reports]
    assert max(lags) <= 1.0 and np.mean(lags) > 0, lags  # the overlap happened


def test_streaming_flow_counts_what_it_learns_from_and_reports_lag(ray_local, tmp_path):
    book, _, _ = run_flow(tmp_path, "impala", 3000)
    counted = book.counters.env_steps
    consumed = sum(report.consumed_steps for report in book.reports)
    # Fragments still queued or sampling when the run stopped were counted, not learned from:
    # at most one batch waiting plus every worker's requests in flight.
    depth = 2  # runtime.max_inflight_fragments
    assert 0 < counted - consumed <= (WORKERS + WORKERS * depth) * T * K, (counted, consumed)
    # ... and they are exactly what the driver reports as waiting (nothing lost here).
    assert book.counters.consumed_env_steps == consumed and book.counters.lost_env_steps == 0
    assert counted == consumed + book.waiting_env_steps, (counted, consumed, book.waiting_env_steps)
    assert {report.consumed_steps for report in book.reports} == {WORKERS * T * K}
    assert_versions_go_up_by_one(book.reports)
    lags = [report.policy_lag for report in book.reports]
    assert min(lags) >= 0 and np.mean(lags) > 0, lags  # workers never wait for the learner


def test_gradient_flow_applies_one_gradient_per_counted_fragment(ray_local, tmp_path):
    book, _, state = run_flow(tmp_path, "a3c", 1500)
    counted = book.counters.env_steps
    assert sum(report.consumed_steps for report in book.reports) == counted == len(book.reports) * T * K
    assert book.counters.fragments == len(book.reports)
    # The learner applied them one at a time, in arrival order: each made its own version.
    # When the run stopped, the other workers' requests were still out: the learner may have
    # applied their gradients without the driver having counted their fragments yet.
    versions = [report.version for report in book.reports]
    assert len(set(versions)) == len(versions) and max(versions) <= state["version"]
    assert len(versions) <= state["version"] <= len(versions) + WORKERS - 1
    lags = [report.policy_lag for report in book.reports]
    assert min(lags) >= 0 and max(lags) >= 1, lags  # the other worker's gradients land in between


def test_replay_flow_stores_every_counted_step_and_keeps_the_replay_ratio(ray_local, tmp_path):
    ratio, batch = 4.0, 16
    book, flow, state = run_flow(
        tmp_path,
        "dqn",
        4000,
        dqn={"learning_starts": 500, "replay_ratio": ratio, "batch_size": batch, "replay_shards": 2},
    )
    counted = book.counters.env_steps
    # The last writes may still be arriving at the shards when the driver asks.
    stored = 0
    for _ in range(50):
        stored = sum(ray.get(shard.describe.remote())["stored_steps"] for shard in flow.shards)
        if stored == counted:
            break
    assert stored == counted
    steps = sum(report.updates for report in book.reports)
    assert steps == book.counters.learner_updates == state["updates"]
    assert sum(report.consumed_steps for report in book.reports) == steps * batch
    # Never ahead of the ratio, and not far behind it (one call of gradient steps, plus the
    # fragments that arrived while it ran).
    due = (counted - 500) * ratio / batch
    assert due - 2 * STEPS_PER_CALL - WORKERS * 2 * T * K * ratio / batch <= steps <= due, (steps, due)
    assert_versions_go_up_by_one(book.reports)
    assert max(report.policy_lag for report in book.reports) > 0


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_runs_on_a_flow(algo):
    """Registration alone picks the flow: every registered algorithm maps to one."""
    config = resolve({"algo": algo})
    flow = flow_for(config, ALGORITHMS[algo])
    assert type(flow) is FLOWS[type(ALGORITHMS[algo].flow(config.algo_config))]
