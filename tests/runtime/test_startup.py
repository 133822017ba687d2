"""OUT/startup.json's clock (runtime/startup.py): parts follow one another from the process's
launch, training is what lies between the start and the stop rule, and a run that failed
before it stopped has no finish."""

from __future__ import annotations

import json
import time

import pytest

from distrl.runtime.startup import StartupClock, process_launched


def test_the_first_part_runs_from_the_process_launch_and_each_next_from_the_last_mark(tmp_path):
    clock = StartupClock()
    assert clock.launched <= time.time()
    assert process_launched() == pytest.approx(clock.launched, abs=0.05)
    clock.mark("imports")
    time.sleep(0.05)
    clock.mark("ray start")
    time.sleep(0.02)
    clock.stopping()
    time.sleep(0.03)
    clock.mark_end("checkpoint")
    record = clock.record()
    assert record["start"]["imports"] > 0  # this test process started before this line
    assert record["start"]["ray start"] == pytest.approx(0.05, abs=0.02)
    assert record["training_s"] == pytest.approx(0.02, abs=0.015)
    assert record["finish"] == {"checkpoint": pytest.approx(0.03, abs=0.015)}
    clock.write(tmp_path)
    assert json.loads((tmp_path / "startup.json").read_text()) == record


def test_without_a_stop_there_is_no_finish():
    clock = StartupClock()
    clock.mark("imports")
    clock.mark_end("ray shutdown")  # the run failed during its start
    assert clock.record()["finish"] == {} and clock.record()["training_s"] == 0.0


EMBEDDED = """
import json, psutil, ray
from ray._private import worker
from ray._private.node import Node
from distrl.runtime import cluster

before = (Node.start_api_server, Node.start_monitor)
assert cluster.connect(None, 1)
kinds = sorted(worker._global_node.all_processes)
answer = ray.get(ray.remote(lambda: 41).remote()) + 1
restored = (Node.start_api_server, Node.start_monitor) == before
children = [p.pid for p in psutil.Process().children(recursive=True)]
cluster.stop_embedded()
left = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
print(json.dumps({"kinds": kinds, "answer": answer, "restored": restored, "left": left}))
"""


def test_an_embedded_ray_starts_without_the_head_processes_it_never_uses(tmp_path):
    """Ray's API server and autoscaler monitor are not started for a run's own Ray (ray.init
    waited for the first, its shutdown a second for the second); the node runs tasks, Ray's
    own methods are back in place afterwards, and the shutdown leaves no process behind."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["kinds"] == ["gcs_server", "log_monitor", "raylet"], facts
    assert facts["answer"] == 42 and facts["restored"] and facts["left"] == [], facts
