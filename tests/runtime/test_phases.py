"""Where the time goes (runtime/phases.py): a process's clock over its calls, and the table
the driver derives from the seconds every process reports."""

from __future__ import annotations

import time

import pytest

from distrl.runtime.phases import CallClock, PhaseTotals, table_text


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


def test_the_end_of_run_table_lists_each_kinds_phases_largest_first_and_the_bound():
    totals = PhaseTotals()
    totals.add("worker", {"env_step": 12.0, "forward": 4.0, "idle": 4.0})
    totals.add("learner", {"update": 9.0, "transfer": 0.5, "idle": 0.5})
    text = table_text(totals.table(wall_s=10.0, env_steps=20_000, processes={"worker": 2, "learner": 1}))
    lines = text.splitlines()
    worker = lines.index("  worker (phases add up to 100%)")
    assert [line.split()[0] for line in lines[worker + 1 : worker + 4]] == ["env_step", "forward", "idle"]
    assert "60.0%" in lines[worker + 1] and "0.600 s" in lines[worker + 1]
    assert lines[-1] == "  bound: learner.update"
    assert "driver" not in text  # a kind that reported nothing has no rows
    assert table_text({"phases": {}}) == ""
