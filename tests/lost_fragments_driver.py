"""A driver for tests/test_cluster_runs.py, run as its own process: python THIS ADDRESS NODE_PID ROOT.
On a head (3 CPUs) + node (2 CPUs) cluster: counts worker slots node by node, then puts a
large fragment-like object on each node, takes the node away, and fetches what survived."""

import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

from distrl.runtime import cluster

ROOT = Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "scripts" / "local_cluster.py")
local_cluster = importlib.util.module_from_spec(spec)
spec.loader.exec_module(local_cluster)

cluster.connect(sys.argv[1], 0)
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from distrl.runtime.flows.base import fetch_surviving

nodes = [n for n in ray.nodes() if n["Alive"]]
head = next(n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"])
other = next(n["NodeID"] for n in nodes if n["NodeID"] != head)
result = {
    "slots_2cpu_total": cluster.worker_slots(2, free_only=False, head_reserve=1),
    "slots_1cpu_total": cluster.worker_slots(1, free_only=False, head_reserve=1),
}


@ray.remote(num_cpus=1)
class Sampler:
    def fragment(self, value):
        return np.full(1_000_000, value, dtype=np.float32)  # 4 MB: kept in this node's object store


on_other = Sampler.options(scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False)).remote()
on_head = Sampler.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False)).remote()
refs = [on_other.fragment.remote(1.0), on_head.fragment.remote(2.0)]
ray.wait(refs, num_returns=2, fetch_local=False)
deadline = time.monotonic() + 10
while time.monotonic() < deadline:  # free CPUs show with a short delay
    result["slots_1cpu_free"] = cluster.worker_slots(1, free_only=True)
    if result["slots_1cpu_free"] == 3:
        break
    time.sleep(0.25)
local_cluster.remove_node(int(sys.argv[2]))
deadline = time.monotonic() + 90
while other in cluster.alive_nodes() and time.monotonic() < deadline:
    time.sleep(0.5)
started = time.monotonic()
found, lost = fetch_surviving(refs)
result.update(found=[float(a[0]) for a in found], lost=lost, fetch_s=time.monotonic() - started)
print(json.dumps(result))
