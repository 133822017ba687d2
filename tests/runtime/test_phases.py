"""Where the time goes (runtime/phases.py): a process's clock over its calls, and the table
the driver derives from the seconds every process reports."""

from __future__ import annotations

import time

import pytest

from distrl.runtime.phases import CallClock, PhaseTotals


def test_a_calls_clock_counts_the_gap_before_it_and_what_its_phases_leave():
    clock = CallClock()
    assert clock.start() == 0.0  # the first call: the process was starting, not idle
    time.sleep(0.02)
    first = clock.finish({"env_step": 0.005}, 0.0)
    assert first["other"] == pytest.approx(0.015, abs=0.01)
    time.sleep(0.03)
    idle = clock.start()
    phases = clock.finish({}, idle)
    assert phases["idle"] == pytest.approx(0.03, abs=0.015)
    assert set(phases) == {"other", "idle"}


def test_the_table_divides_by_the_processes_of_each_kind_and_names_the_busiest():
    totals = PhaseTotals()
    # Two workers over 10 s: 12 s stepping envs, 4 s forward, 4 s idle between them.
    totals.add("worker", {"env_step": 12.0, "forward": 4.0, "idle": 4.0})
    totals.add("learner", {"update": 9.0, "transfer": 0.5, "idle": 0.5})
    totals.add("driver", {"wait": 9.0, "duties": 0.5, "flow": 0.5})
    table = totals.table(wall_s=10.0, env_steps=20_000, processes={"worker": 2, "learner": 1, "driver": 1})
    phases = table["phases"]
    assert phases["worker.env_step"] == pytest.approx({"share": 0.6, "s_per_1k_steps": 0.6})
    assert phases["learner.update"]["share"] == pytest.approx(0.9)
    assert table["phase_coverage"] == pytest.approx({"worker": 1.0, "learner": 1.0, "driver": 1.0})
    # The learner is busy 95% of its time, each worker 80%: the learner's update bounds the run.
    assert table["bound"] == "learner.update"
    # Added in pieces, the same seconds give the same table.
    pieces = PhaseTotals()
    for kind, phases_ in totals.seconds.items():
        for name, seconds in phases_.items():
            pieces.add(kind, {name: seconds / 2})
            pieces.add(kind, {name: seconds / 2})
    assert pieces.table(10.0, 20_000, {"worker": 2, "learner": 1, "driver": 1}) == table


def test_nothing_measured_yet_is_an_empty_table():
    assert PhaseTotals().table(5.0, 0, {"worker": 1, "learner": 1, "driver": 1}) == {
        "phases": {},
        "phase_coverage": {},
        "bound": None,
    }
