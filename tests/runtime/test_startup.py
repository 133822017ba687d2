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
import json, pathlib, psutil, ray
from ray._private import services, utils, worker
from ray._private.node import Node
from distrl.runtime import cluster

def ray_functions():
    return (Node.start_api_server, Node.start_monitor, utils.get_dashboard_dependency_error, services.get_node)

before = ray_functions()
assert cluster.connect(None, 1)
kinds = sorted(worker._global_node.all_processes)
answer = ray.get(ray.remote(lambda: 41).remote()) + 1
restored = ray_functions() == before
children = psutil.Process().children(recursive=True)
node = worker._global_node
# The port each agent took, as the node's agents record it for the raylet (-1: none).
files = pathlib.Path(node.get_session_dir_path()).glob(f"*_port_{node.node_id}")
ports = {path.name.rsplit("_", 1)[0]: path.read_text() for path in files}
ids = (node.node_id, ray.NodeID.from_random().hex())
seen = [cluster.registered(node.gcs_address, node_id, 0.3) for node_id in ids]
cluster.stop_embedded()
left = [p.pid for p in children if psutil.pid_exists(p.pid) and psutil.Process(p.pid).status() != "zombie"]
print(json.dumps({"kinds": kinds, "answer": answer, "restored": restored, "ports": ports, "seen": seen, "left": left}))
"""


def test_an_embedded_ray_starts_without_the_head_processes_it_never_uses(tmp_path):
    """Ray's API server and autoscaler monitor are not started for a run's own Ray (ray.init
    waited for the first, its shutdown a second for the second), and its dashboard agent
    starts as on a minimal install (no HTTP server or metrics agent); the node runs tasks,
    Ray's own functions are back in place afterwards, and the shutdown leaves no process
    behind."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    assert facts["kinds"] == ["gcs_server", "log_monitor", "raylet"], facts
    assert facts["answer"] == 42 and facts["restored"] and facts["left"] == [], facts
    # A minimal dashboard agent records no metrics agent (a full one records its gRPC port,
    # which the raylet waits for); the runtime env agent is up as always.
    ports = facts["ports"]
    assert ports["metrics_agent_port"] == ports["dashboard_agent_listen_port"] == "-1", facts
    assert int(ports["runtime_env_agent_port"]) > 0, facts
    assert facts["seen"] == [True, False], facts  # the driver's quick look for its raylet
