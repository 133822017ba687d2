#!/usr/bin/env python
"""Throughput benchmark: how close distrl's sampling comes to the raw environment speed.

For each environment, in one run (so that ratios compare like with like on a noisy machine):

  ceiling     one process steps the env with distrl's preprocessing and random actions
  sampling    distrl's rollout workers (real Ray actors, policy forward pass, fragments
              through the object store), no learner: env steps/s over all workers
  ppo         end-to-end PPO training (sampling + learner updates + weight broadcast)

    python scripts/bench.py                       # CartPole-v1 and ALE/Pong-v5
    python scripts/bench.py --envs CartPole-v1 --seconds 20
    python scripts/bench.py --ceilings            # the ceiling of one env per family
    python scripts/bench.py --clusters            # sampling on 1 node vs 2 loopback nodes

Prints a Markdown table for BENCHMARKS.md. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("RAY_AUTH_MODE", "token")  # read by Ray at import; the --clusters nodes use it

import ray  # noqa: E402
import torch  # noqa: E402

from distrl.config import resolve  # noqa: E402
from distrl.envs import family_of, frames_per_step, make_env  # noqa: E402
from distrl.runtime.parameter_server import ParameterServer  # noqa: E402
from distrl.runtime.rollout_worker import RolloutWorker  # noqa: E402
from distrl.runtime.trainer import Trainer  # noqa: E402


def ceiling(env_id: str, seconds: float, **options) -> float:
    """Single-process env steps/s with the same preprocessing, random actions."""
    env = make_env(env_id, seed=0, **options)
    env.reset()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def sampling(config, num_workers: int, seconds: float, report_nodes: bool = False):
    """Env steps/s of ``num_workers`` rollout workers with no learner, two fragments in
    flight per worker (the runtime's default backpressure); spread over the nodes."""
    ps = ParameterServer.remote()
    workers = [
        RolloutWorker.options(num_cpus=1, scheduling_strategy="SPREAD").remote(i, config, ps, seed=1000 * i)
        for i in range(num_workers)
    ]
    infos = ray.get([w.setup.remote() for w in workers])
    ray.get([w.sample.remote()[1] for w in workers])  # warm-up: first fragment builds buffers
    pending = {}
    for index, worker in enumerate(workers):
        for _ in range(config.runtime.max_inflight_fragments):
            _, summary = worker.sample.remote()
            pending[summary] = index
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            index = pending.pop(ref)
            steps += ray.get(ref)["env_steps"]
            _, summary = workers[index].sample.remote()
            pending[summary] = index
    elapsed = time.perf_counter() - start
    for worker in workers:
        ray.kill(worker)
    ray.kill(ps)
    if report_nodes:
        return steps / elapsed, len({info["node_id"] for info in infos})
    return steps / elapsed


def ppo(env_id: str, num_workers: int, seconds: float, overrides: dict) -> float:
    """End-to-end PPO env steps/s, measured between the first and the last report so that
    start-up is not counted."""
    with tempfile.TemporaryDirectory() as out:
        user = {
            "env": {"id": env_id},
            "runtime": {"num_workers": num_workers, **overrides.get("runtime", {})},
            "stop": {"seconds": seconds},
            "output": {
                "dir": out,
                "report_every_s": 1.0,
                "console": "off",
                "tensorboard": False,
                "checkpoint_every_s": 1e9,
            },
        }
        config = resolve(user)
        Trainer(config, Path(out)).run()
        import json

        records = [json.loads(line) for line in Path(out, "progress.jsonl").read_text().splitlines()]
    first, last = records[0], records[-1]
    return (last["env_steps"] - first["env_steps"]) / max(last["time_s"] - first["time_s"], 1e-9)


# One environment per family (retro twice: in its own process, as workers run it, and in
# this process, to show what the process boundary costs).
CEILING_ENVS = [
    ("CartPole-v1", {}),
    ("MountainCar-v0", {}),
    ("FrozenLake-v1", {}),
    ("ALE/Pong-v5", {}),
    ("ALE/Breakout-v5", {}),
    ("VizdoomBasic-v1", {}),
    ("VizdoomDefendCenter-v1", {}),
    ("retro/Airstriker-Genesis-v0", {}),
    ("retro/Airstriker-Genesis-v0", {"subprocess": False}),
    ("distrl/MarketMaking-v0", {}),
    ("distrl/Catch-v0", {}),
    ("distrl/NChain-v0", {}),
]


def ceilings(seconds: float) -> None:
    print("| family | env | options | observation | steps/s | frames/s |")
    print("|---|---|---|---|---|---|")
    for env_id, options in CEILING_ENVS:
        env = make_env(env_id, seed=0, **options)
        shape = f"{tuple(env.observation_space.shape)} {env.observation_space.dtype}"
        env.close()
        rate = ceiling(env_id, seconds, **options)
        frames = rate * frames_per_step(env_id, options)
        option_text = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        print(
            f"| {family_of(env_id).name} | {env_id} | {option_text} | {shape} | {rate:,.0f} | {frames:,.0f} |",
            flush=True,
        )


def clusters(env_ids: list[str], workers: int, seconds: float) -> None:
    """Sampling throughput with the same number of workers on one node and on two nodes of
    a `ray start` cluster on 127.0.0.1 (scripts/local_cluster.py), measured back to back."""
    import socket
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import local_cluster

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    print("| env | workers | layout | nodes used | sampling steps/s |")
    print("|---|---|---|---|---|")
    rates = {}
    for env_id in env_ids:
        for layout in ("1 node", "2 nodes"):
            local_cluster.stop()
            port = free_port()
            address = f"127.0.0.1:{port}"
            if layout == "1 node":
                local_cluster.start_head(port, free_port(), cpus=workers)
            else:
                local_cluster.start_head(port, free_port(), cpus=workers // 2)
                local_cluster.add_node(address, cpus=workers - workers // 2)
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            expected = 1 if layout == "1 node" else 2
            for _ in range(100):  # a node that just started may not be registered yet
                if sum(node["Alive"] for node in ray.nodes()) >= expected:
                    break
                time.sleep(0.2)
            try:
                config = resolve({"env": {"id": env_id}})
                rate, nodes = sampling(config, workers, seconds, report_nodes=True)
            finally:
                ray.shutdown()
                local_cluster.stop()
            rates[(env_id, layout)] = rate
            print(f"| {env_id} | {workers} | {layout} | {nodes} | {rate:,.0f} |", flush=True)
    for env_id in env_ids:
        ratio = rates[(env_id, "2 nodes")] / rates[(env_id, "1 node")]
        print(f"{env_id}: 2 nodes / 1 node = {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "ALE/Pong-v5"])
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per figure")
    parser.add_argument("--workers", type=int, default=2, help="rollout workers for the multi-worker figures")
    parser.add_argument("--ceilings", action="store_true", help="only the single-process rate of each family")
    parser.add_argument("--clusters", action="store_true", help="sampling on one node vs two loopback nodes")
    args = parser.parse_args()
    if args.ceilings:
        ceilings(args.seconds)
        return
    if args.clusters:
        clusters(args.envs, args.workers, args.seconds)
        return

    cpus = os.cpu_count() or 1
    ray.init(
        address="local",
        num_cpus=max(cpus, args.workers + 1),
        include_dashboard=False,
        logging_level="WARNING",
        log_to_driver=False,
    )
    rows = []
    for env_id in args.envs:
        config = resolve({"env": {"id": env_id}})
        k, t = config.runtime.envs_per_worker, config.runtime.fragment_length
        print(f"{env_id}: ceiling ...", flush=True)
        top = ceiling(env_id, args.seconds)
        print(f"{env_id}: sampling with 1 worker ...", flush=True)
        one = sampling(config, 1, args.seconds)
        print(f"{env_id}: sampling with {args.workers} workers ...", flush=True)
        many = sampling(config, args.workers, args.seconds)
        print(f"{env_id}: PPO with {args.workers} workers ...", flush=True)
        end_to_end = ppo(env_id, args.workers, args.seconds + 5, {})
        rows.append((env_id, k, t, top, one, many, end_to_end))
    ray.shutdown()

    print()
    print(
        f"machine: {platform.machine()}, {cpus} CPUs, {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, ray {ray.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )
    print(f"figures: env steps/s (agent steps; Atari frames = 4 x steps), {args.seconds:.0f} s per figure\n")
    w = args.workers
    print(
        f"| env | K x T per worker | ceiling (1 process) | sampling, 1 worker | 1 worker / ceiling "
        f"| sampling, {w} workers | {w} workers / ({w} x ceiling) | PPO end-to-end, {w} workers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for env_id, k, t, top, one, many, end_to_end in rows:
        print(
            f"| {env_id} | {k} x {t} | {top:,.0f} | {one:,.0f} | {one / top:.2f} | {many:,.0f} "
            f"| {many / (w * top):.2f} | {end_to_end:,.0f} |"
        )


if __name__ == "__main__":
    main()
