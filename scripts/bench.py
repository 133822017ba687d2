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
    python scripts/bench.py --vs-rllib --json     # distrl and RLlib side by side (distrl[rllib])
    python scripts/bench.py --vs-sb3 --json       # the main job against SB3's PPO, whole process (distrl[sb3])
    python scripts/bench.py --startup --repeats 3 # the main job's start and finish, part by part
    python scripts/bench.py --vs-learner          # PPO on Pong end to end vs the learner's ceiling
    python scripts/bench.py --levers pong_cpu     # the learner's ceiling with and without each lever it keeps
    python scripts/bench.py --driver-cost --seconds 30   # the driver's CPU per fragment, per flow
    python scripts/bench.py --scaling-inputs ppo_pong    # per-step figures of docs/scaling.md's model

Prints a Markdown table for BENCHMARKS.md. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("RAY_AUTH_MODE", "token")  # read by Ray at import; the --clusters nodes use it

import ray  # noqa: E402
import torch  # noqa: E402

from distrl.config import find_config, load_yaml, parse_override, resolve, set_dotted  # noqa: E402
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


def inference_ceiling(config, seconds: float) -> float:
    """One process, one torch thread, no Ray: the worker's K env copies (the same vector env)
    and the same policy's forward pass, nothing recorded. What one rollout worker would do if
    cutting fragments and shipping them cost nothing."""
    from distrl.algos import ALGORITHMS
    from distrl.envs.vector import make_vector_env
    from distrl.models import build_model

    torch.set_num_threads(1)
    envs = make_vector_env(config.env.id, config.runtime.envs_per_worker, 0, config.env.options, config.env.vectorize)
    model = build_model(config.model, envs.observation_space, envs.action_space, ALGORITHMS[config.algo].model_head)
    model.eval()
    obs = envs.reset()
    steps = 0
    with torch.inference_mode():
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            actions = model.act(torch.from_numpy(obs))["actions"].numpy()
            obs = envs.step(actions).obs
            steps += envs.num_envs
        rate = steps / (time.perf_counter() - start)
    envs.close()
    torch.set_num_threads(os.cpu_count() or 1)
    return rate


class Sampler:
    """``num_workers`` rollout workers with no learner, spread over the nodes, kept alive
    between measurements so that they can alternate with other figures."""

    def __init__(self, config, num_workers: int):
        self.config = config
        self.ps = ParameterServer.remote()
        self.workers = [
            RolloutWorker.options(num_cpus=1, scheduling_strategy="SPREAD").remote(i, config, self.ps, seed=1000 * i)
            for i in range(num_workers)
        ]
        self.infos = ray.get([w.setup.remote() for w in self.workers])
        ray.get([w.sample.remote()[1] for w in self.workers])  # warm-up: first fragment builds buffers

    def measure(self, seconds: float) -> float:
        """Env steps/s over ``seconds``, two fragments in flight per worker (the runtime's
        default backpressure). Returns with no request in flight, the workers idle."""
        pending = {}
        for index, worker in enumerate(self.workers):
            for _ in range(self.config.runtime.max_inflight_fragments):
                pending[worker.sample.remote()[1]] = index
        steps = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                steps += ray.get(ref)["env_steps"]
                pending[self.workers[index].sample.remote()[1]] = index
        elapsed = time.perf_counter() - start
        ray.get(list(pending))
        return steps / elapsed

    @property
    def num_nodes(self) -> int:
        return len({info["node_id"] for info in self.infos})

    def stop(self) -> None:
        for worker in self.workers:
            ray.kill(worker)
        ray.kill(self.ps)


def sampling(config, num_workers: int, seconds: float, report_nodes: bool = False):
    """Env steps/s of ``num_workers`` rollout workers with no learner (see ``Sampler``)."""
    sampler = Sampler(config, num_workers)
    rate = sampler.measure(seconds)
    sampler.stop()
    return (rate, sampler.num_nodes) if report_nodes else rate


def interleaved(config, num_workers: int, seconds: float, rounds: int) -> tuple[float, float, float]:
    """The inference ceiling and the sampling rate of ``num_workers`` workers measured in
    alternating slices (``rounds`` of each, ``seconds`` in all per figure), so that a machine
    whose speed drifts affects both alike. Returns the medians of the ceiling, of the
    sampling rate, and of the per-round ratio sampling / (workers x ceiling)."""
    sampler = Sampler(config, num_workers)
    ceilings, rates = [], []
    for _ in range(rounds):
        ceilings.append(inference_ceiling(config, seconds / rounds))
        rates.append(sampler.measure(seconds / rounds))
    sampler.stop()
    ratios = [rate / (num_workers * top) for rate, top in zip(rates, ceilings)]
    return statistics.median(ceilings), statistics.median(rates), statistics.median(ratios)


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
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import local_cluster

    print("| env | workers | layout | nodes used | sampling steps/s |")
    print("|---|---|---|---|---|")
    rates = {}
    for env_id in env_ids:
        for layout in ("1 node", "2 nodes"):
            local_cluster.stop()
            port = local_cluster.free_port()
            address = f"127.0.0.1:{port}"
            if layout == "1 node":
                local_cluster.start_head(port, local_cluster.free_port(), cpus=workers)
            else:
                local_cluster.start_head(port, local_cluster.free_port(), cpus=workers // 2)
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


# ---------------------------------------------------------------- the driver's cost per fragment

# One algorithm per data flow (docs/design.md, "The four data flows"), each with a cheap update
# so that the learner does not hold the fragment rate down (A2C, not PPO's 20 epochs).
FLOW_ALGOS = {"synchronous": "a2c", "streaming": "impala", "gradients": "a3c", "replay": "dqn"}
INGEST = ("transfer", "collate")  # the learner's phases that take fragments in


def _records_of_run(algo: str, workers: int, seconds: float, address: Optional[str]) -> list[dict]:
    """progress.jsonl of one `distrl train` of ``algo`` on CartPole, one env copy per worker
    and 16-step fragments; on an embedded Ray without ``address``."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "distrl", "train", "--algo", algo, "--env", "CartPole-v1",
                   "--num-workers", str(workers), "--stop-seconds", str(seconds), "--out", out,
                   "--set", "runtime.envs_per_worker=1", "runtime.fragment_length=16",
                   "output.report_every_s=1", "output.console=off"]  # fmt: skip
        command += ["dqn.learning_starts=500"] if algo == "dqn" else []
        # Embedded, workers half a CPU each: all of them fit on two cores' worth of Ray CPUs.
        command += ["--address", address] if address else ["runtime.num_cpus_per_worker=0.5"]
        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        done = subprocess.run(
            command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=seconds + 300, env=env
        )
        if done.returncode != 0:
            raise RuntimeError(f"{algo}: distrl train exited with {done.returncode}:\n{done.stderr[-3000:]}")
        return [json.loads(line) for line in Path(out, "progress.jsonl").read_text().splitlines()]


def driver_cost(workers_list: list[int], seconds: float, layouts: list[str]) -> list[dict]:
    """What one fragment costs the driver, per flow, with cheap envs and small fragments (CartPole,
    one env copy per worker, 16 steps: as many fragments per second as the workers can make):
    the driver process's CPU seconds (all its threads, Ray's included: ``driver_cpu_s``) per
    fragment received, over the run's reports after the first ``seconds / 3``; the fragments
    per second it handled; and the learner's ingest, its transfer and collate seconds per
    fragment. ``layouts``: "1 node" (an embedded Ray) and/or "2 nodes" (a `ray start` head and
    a second node on 127.0.0.1, workers spread over both)."""
    sys.path.insert(0, str(HERE))
    import local_cluster

    rows = []
    for layout in layouts:
        for flow, algo in FLOW_ALGOS.items():
            for workers in workers_list:
                address = None
                if layout == "2 nodes":
                    local_cluster.stop()
                    port = local_cluster.free_port()
                    address = f"127.0.0.1:{port}"
                    local_cluster.start_head(port, local_cluster.free_port(), cpus=workers // 2 + 1)
                    local_cluster.add_node(address, cpus=workers - workers // 2 + 1)
                try:
                    records = _records_of_run(algo, workers, seconds, address)
                finally:
                    if address:
                        local_cluster.stop()
                first = next(record for record in records if record["time_s"] >= seconds / 3)
                last = records[-1]
                fragments = max(last["fragments"] - first["fragments"], 1)
                steps_per_fragment = (last["env_steps"] - first["env_steps"]) / fragments
                phases = last.get("phases", {})
                ingest = sum(
                    phases.get(f"learner.{part}", {}).get("s_per_1k_steps", 0.0) for part in ("transfer", "collate")
                )
                row = {
                    "layout": layout,
                    "flow": flow,
                    "algo": algo,
                    "workers": workers,
                    "nodes": last["num_nodes"],
                    "fragments_per_s": fragments / max(last["time_s"] - first["time_s"], 1e-9),
                    "driver_cpu_ms_per_fragment": 1000 * (last["driver_cpu_s"] - first["driver_cpu_s"]) / fragments,
                    "driver_cpu_share": (last["driver_cpu_s"] - first["driver_cpu_s"])
                    / max(last["time_s"] - first["time_s"], 1e-9),
                    # s per 1,000 steps -> ms per fragment
                    "learner_ingest_ms_per_fragment": ingest * steps_per_fragment,
                }
                rows.append(row)
                cost, rate = row["driver_cpu_ms_per_fragment"], row["fragments_per_s"]
                print(f"  {layout} {flow} {workers} workers: {rate:.0f} fragments/s, driver {cost:.2f} ms CPU each",
                      file=sys.stderr, flush=True)  # fmt: skip
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}; "
          f"CartPole-v1, 1 env x 16 steps per fragment, {seconds:.0f} s per run")  # fmt: skip
    print("| layout | flow (algo) | workers | nodes used | fragments/s | driver CPU (cores) | "
          "driver CPU ms per fragment | learner ingest ms per fragment |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['layout']} | {row['flow']} ({row['algo']}) | {row['workers']} | {row['nodes']} | "
              f"{row['fragments_per_s']:.0f} | {row['driver_cpu_share']:.2f} | "
              f"{row['driver_cpu_ms_per_fragment']:.2f} | {row['learner_ingest_ms_per_fragment']:.2f} |")  # fmt: skip
    return rows


# ---------------------------------------------------------------- side by side with RLlib

VS_RLLIB_CASES = ("cartpole_time_to_475", "pong_ppo_steps_per_s", "pong_sampling_steps_per_s")
HERE = Path(__file__).resolve().parent


def _run(command: list[str], timeout: float) -> tuple[float, str]:
    """Run one side's process; its wall time from launch to exit and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def _other_side(script: str, args: list[str], timeout: float) -> tuple[float, dict]:
    """The other library's side (scripts/rllib_side.py, scripts/sb3_side.py): its wall time
    and the JSON of its one ``RESULT`` line."""
    wall, stdout = _run([sys.executable, str(HERE / script), *args], timeout)
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return wall, json.loads(line[len("RESULT ") :])


def _rllib(case: str, *args: str, timeout: float = 3600) -> tuple[float, dict]:
    return _other_side("rllib_side.py", [case, *args], timeout)


def _distrl_train(args: list[str], timeout: float = 3600) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "distrl", "train", *args, "--out", out, "--set", "output.console=off"]
        wall, _ = _run(command, timeout)
        records = [json.loads(line) for line in Path(out, "progress.jsonl").read_text().splitlines()]
    return wall, records


def _steady_rate(records: list[dict], warmup_s: float) -> float:
    """Env steps/s between the first report after ``warmup_s`` of training and the last."""
    after = [r for r in records if r["time_s"] >= warmup_s]
    first, last = after[0], after[-1]
    return (last["env_steps"] - first["env_steps"]) / max(last["time_s"] - first["time_s"], 1e-9)


# distrl's side of the Pong cases: CleanRL's Atari PPO shape, as in rllib_side.PONG.
PONG_PPO_ARGS = [
    "--algo", "ppo", "--env", "ALE/Pong-v5", "--num-workers", "1", "--envs-per-worker", "8",
    "--set", "runtime.fragment_length=128", "ppo.epochs=4", "ppo.num_minibatches=4", "ppo.clip_coef=0.1",
]  # fmt: skip


def vs_rllib(cases: list[str], repeats: int, seconds: float, warmup_s: float, as_json: bool) -> None:
    """Each case on both sides, one after the other (alternating, ``repeats`` times for the
    CartPole case, whose figure is a median), in this one run."""
    rows = []
    for case in cases:
        print(f"{case} ...", file=sys.stderr, flush=True)
        if case == "cartpole_time_to_475":
            unit, better = "s", "lower"
            distrl_walls, rllib_walls = [], []
            for seed in range(1, repeats + 1):
                wall, records = _distrl_train(
                    ["--algo", "ppo", "--env", "CartPole-v1", "--num-workers", "2", "--stop-reward", "475",
                     "--stop-env-steps", "300000", "--seed", str(seed)]
                )  # fmt: skip
                reached = records[-1].get("episode_return_mean", 0) >= 475
                distrl_walls.append(wall if reached else float("inf"))
                rwall, result = _rllib(case, "--seed", str(seed), "--max-env-steps", "300000")
                rllib_walls.append(rwall if result["reached"] else float("inf"))
                print(
                    f"  seed {seed}: distrl {wall:.1f} s ({records[-1]['env_steps']} steps), "
                    f"rllib {rwall:.1f} s ({result['env_steps']} steps)",
                    file=sys.stderr,
                    flush=True,
                )
            ours, theirs = statistics.median(distrl_walls), statistics.median(rllib_walls)
            ratio = theirs / ours
        elif case == "pong_ppo_steps_per_s":
            unit, better = "env steps/s", "higher"
            total = warmup_s + seconds
            _, records = _distrl_train([*PONG_PPO_ARGS, "--stop-seconds", str(total)])
            ours = _steady_rate(records, warmup_s)
            _, result = _rllib(case, "--seconds", str(seconds), "--warmup-s", str(warmup_s))
            theirs = result["steps_per_s"]
            ratio = ours / theirs
        elif case == "pong_sampling_steps_per_s":
            unit, better = "env steps/s", "higher"
            _, stdout = _run(
                [sys.executable, __file__, "--sampling-only", "ALE/Pong-v5", "--workers", "2",
                 "--envs-per-worker", "8", "--seconds", str(seconds)],
                timeout=3600,
            )  # fmt: skip
            ours = json.loads(stdout.strip().splitlines()[-1])["steps_per_s"]
            _, result = _rllib(case, "--seconds", str(seconds), "--workers", "2", "--envs-per-worker", "8")
            theirs = result["steps_per_s"]
            ratio = ours / theirs
        else:
            raise SystemExit(f"unknown case {case!r}; the cases are {', '.join(VS_RLLIB_CASES)}")
        row = dict(case=case, distrl=round(ours, 2), rllib=round(theirs, 2), ratio=round(ratio, 3), unit=unit)
        rows.append((row, better))
        if as_json:
            print(json.dumps(row), flush=True)

    import ray.rllib  # noqa: F401  (the version below is the one rllib_side.py ran)

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}",
        file=sys.stderr,
    )
    print("| case | distrl | RLlib | unit | ratio (distrl ahead when > 1) |", file=sys.stderr)
    print("|---|---|---|---|---|", file=sys.stderr)
    for row, better in rows:
        print(
            f"| {row['case']} | {row['distrl']:,.1f} | {row['rllib']:,.1f} | {row['unit']} ({better} is better) "
            f"| {row['ratio']:.2f} |",
            file=sys.stderr,
        )


def _sb3(settings: str, seed: int, timeout: float = 900) -> tuple[float, dict]:
    return _other_side("sb3_side.py", ["--settings", settings, "--seed", str(seed)], timeout)


# The cases of --vs-sb3: distrl's main job (`distrl train`, its defaults: PPO on CartPole-v1,
# 1 worker x 8 envs x 32 steps sampled during each update, 20 epochs, stop at a 100-episode
# mean of 475) against SB3's PPO at its own tuned settings (RL Zoo's) and at distrl's
# hyperparameters (scripts/sb3_side.py says what each is).
VS_SB3_CASES = {"sb3 at its tuned settings (zoo)": "zoo", "sb3 at distrl's settings": "distrl"}


def vs_sb3(repeats: int, as_json: bool) -> None:
    """Whole processes, launch to exit, alternating distrl and SB3's cases seed by seed, so
    that the machine's drift falls on both sides alike; each pair's ratio (SB3's seconds over
    distrl's: distrl ahead when > 1) and their spread."""
    walls: dict[str, list[float]] = {"distrl": [], **{case: [] for case in VS_SB3_CASES}}
    steps: dict[str, list[int]] = {side: [] for side in walls}
    for seed in range(1, repeats + 1):
        wall, records = _distrl_train(["--seed", str(seed)], timeout=900)
        reached = records[-1]["episode_return_mean"] >= 475
        walls["distrl"].append(wall if reached else float("inf"))
        steps["distrl"].append(records[-1]["env_steps"])
        last = records[-1]
        line = f"  seed {seed}: distrl {wall:.1f} s ({last['env_steps']:,} steps, {last['time_s']:.1f} s training)"
        for case, settings in VS_SB3_CASES.items():
            swall, result = _sb3(settings, seed)
            walls[case].append(swall if result["reached"] else float("inf"))
            steps[case].append(result["env_steps"])
            line += f"; {settings} {swall:.1f} s ({result['env_steps']:,} steps, {result['train_s']:.1f} s training)"
        print(line, file=sys.stderr, flush=True)
    import stable_baselines3

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, "
        f"stable-baselines3 {stable_baselines3.__version__}; {repeats} alternating pairs, whole process to a "
        f"100-episode mean of 475",
        file=sys.stderr,
    )
    header = "| side | seconds (each run) | median | env steps (median) | SB3 / distrl per pair | min - max |"
    print(header, file=sys.stderr)
    print("|---|---|---|---|---|---|", file=sys.stderr)
    ours = walls["distrl"]
    print(
        f"| distrl (defaults) | {', '.join(f'{w:.1f}' for w in ours)} | {statistics.median(ours):.1f} "
        f"| {statistics.median(steps['distrl']):,.0f} | | |",
        file=sys.stderr,
    )
    for case in VS_SB3_CASES:
        ratios = [theirs / mine for theirs, mine in zip(walls[case], ours)]
        print(
            f"| {case} | {', '.join(f'{w:.1f}' for w in walls[case])} | {statistics.median(walls[case]):.1f} "
            f"| {statistics.median(steps[case]):,.0f} | {statistics.median(ratios):.2f} "
            f"| {min(ratios):.2f} - {max(ratios):.2f} |",
            file=sys.stderr,
        )
        if as_json:
            row = dict(
                case=case,
                distrl_s=[round(w, 2) for w in ours],
                sb3_s=[round(w, 2) for w in walls[case]],
                ratio_median=round(statistics.median(ratios), 3),
                ratio_min=round(min(ratios), 3),
                ratio_max=round(max(ratios), 3),
            )
            print(json.dumps(row), flush=True)


def startup(repeats: int, variants: list[str]) -> None:
    """The main job's start and finish, part by part (OUT/startup.json, runtime/startup.py),
    over ``repeats`` whole processes of `distrl train`. ``variants``: named sets of
    environment variables (``NAME:KEY=VALUE,KEY=VALUE``, e.g. Ray's own ``RAY_<option>``
    switches) run alternating with the plain run, so that each lever is measured against
    the same runs' drift. The process's rest (the interpreter's exit, after the file is
    written) is its wall time from outside less what the file accounts for."""
    cases: dict[str, dict[str, str]] = {"as is": {}}
    for variant in variants:
        name, _, pairs = variant.partition(":")
        cases[name] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for round_ in range(repeats):
        for name, env in cases.items():
            with tempfile.TemporaryDirectory() as out:
                command = [sys.executable, "-m", "distrl", "train", "--seed", str(round_ + 1), "--out", out,
                           "--set", "output.console=off"]  # fmt: skip
                start = time.perf_counter()
                done = subprocess.run(
                    command, capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **env}
                )
                wall = time.perf_counter() - start
                if done.returncode != 0:
                    raise RuntimeError(f"{name}: distrl train exited with {done.returncode}:\n{done.stderr[-3000:]}")
                record = json.loads(Path(out, "startup.json").read_text())
            inside = record["launch_to_training_s"] + record["training_s"] + record["stop_to_end_s"]
            record["finish"]["the interpreter's exit (from outside)"] = wall - inside
            record["wall_s"] = wall
            runs[name].append(record)
            print(
                f"  round {round_ + 1} {name}: {wall:.1f} s whole, {record['launch_to_training_s']:.1f} s to training, "
                f"{record['training_s']:.1f} s training",
                file=sys.stderr,
                flush=True,
            )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}; "
          f"`distrl train` (PPO on CartPole-v1, defaults), {repeats} runs per case, medians in seconds")  # fmt: skip
    names = list(cases)
    print("| part | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))

    def median_of(name: str, section: str, part: str) -> float:
        return statistics.median(record[section].get(part, 0.0) for record in runs[name])

    for section in ("start", "finish"):
        parts = list(dict.fromkeys(part for name in names for record in runs[name] for part in record[section]))
        for part in parts:
            cells = " | ".join(f"{median_of(name, section, part):.2f}" for name in names)
            print(f"| {section}: {part} | {cells} |")
    totals = (("launch_to_training_s", "launch to training"), ("training_s", "training"), ("wall_s", "whole process"))
    for key, label in totals:
        cells = " | ".join(f"**{statistics.median(record[key] for record in runs[name]):.2f}**" for name in names)
        print(f"| {label} | {cells} |")


# ---------------------------------------------------------------- the learner's ceiling


def recorded_batch(config) -> dict:
    """One real batch of the config's shape (workers x K envs x T steps), sampled by the
    initial policy in this process: what the learner gets from the workers."""
    from distrl.runtime.fragment import collate
    from distrl.runtime.rollout_worker import Request

    worker_class = RolloutWorker.__ray_metadata__.modified_class  # the plain class, in this process
    fragments = []
    for index in range(config.runtime.num_workers):
        worker = worker_class(index, config, ParameterServer.remote(), seed=100 * index)
        worker.setup()
        fragments.append(worker.rollout(Request())[0])
        worker.close()
    return collate(fragments, "cpu")


def learner_ceiling(config, batch: dict, updates: int) -> float:
    """Env steps/s of the algorithm's update alone, on ``batch``, with the threads a learner
    with every core to itself takes (``runtime.learner_threads``: one per core, one for a
    model without convolutions) and the config's learner levers
    (``runtime.learner_channels_last``, ``runtime.learner_precision``) applied as the
    learner applies them: no sampling, no transfer, no Ray."""
    from distrl.algos import ALGORITHMS
    from distrl.algos.interface import Progress
    from distrl.envs import make_env
    from distrl.models import build_model
    from distrl.runtime.learner import apply_memory_format, precision, splits_well

    torch.manual_seed(0)
    spec = ALGORITHMS[config.algo]
    env = make_env(config.env.id, **config.env.options)
    model = build_model(config.model, env.observation_space, env.action_space, spec.model_head)
    env.close()
    threads = config.runtime.learner_threads
    if threads == "auto":
        threads = (os.cpu_count() or 1) if splits_well(model) else 1
    torch.set_num_threads(int(threads))
    apply_memory_format(model, config.runtime)
    algorithm = spec.algorithm_class(config.algo_config, model, None)
    with precision(config.runtime, torch.device("cpu")):
        algorithm.learn(batch, Progress(0))  # warm-up
        start = time.perf_counter()
        for _ in range(updates):
            algorithm.learn(batch, Progress(0))
    return updates * batch["rewards"].numel() / (time.perf_counter() - start)


def _all_reduce_process(rank: int, size: int, address: str, numel: int, repeats: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=size)
    flat = torch.ones(numel)
    dist.all_reduce(flat)  # warm-up: connections made
    start = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(flat)
    if rank == 0:
        Path(out).write_text(str((time.perf_counter() - start) / repeats))
    dist.destroy_process_group()


def all_reduce_seconds(numel: int, learners: int, repeats: int = 20) -> float:
    """Seconds of one gloo all-reduce of ``numel`` floats among ``learners`` processes on
    this machine (loopback): the data-parallel learners' gradient sum, as algos/parallel.py
    does it (one flat buffer)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "seconds")
        mp.start_processes(
            _all_reduce_process, args=(learners, address, numel, repeats, out), nprocs=learners, start_method="spawn"
        )
        return float(Path(out).read_text())


def scaling_inputs(name: str, updates: int) -> None:
    """The per-step figures docs/scaling.md's model takes, for a config (one batch of its
    shape sampled in this process): the bytes one env step moves through the object store,
    the learner's collate seconds per 1,000 steps (its ingest; every data-parallel learner
    pays it for every step), its update seconds per 1,000 steps on every core here, the
    gradient steps per 1,000 env steps, the gradient's bytes, and one gloo all-reduce of it
    between 2 processes on loopback."""
    from distrl.algos import ALGORITHMS
    from distrl.algos.interface import Progress
    from distrl.envs import make_env
    from distrl.models import build_model
    from distrl.runtime.fragment import collate
    from distrl.runtime.rollout_worker import Request

    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    config = resolve(load_yaml(find_config(name)))
    worker_class = RolloutWorker.__ray_metadata__.modified_class
    worker = worker_class(0, config, ParameterServer.remote(), seed=0)
    worker.setup()
    fragment = worker.rollout(Request())[0]
    worker.close()
    ray.shutdown()
    steps_per_fragment = fragment["rewards"].size
    fragments = [fragment] * config.runtime.num_workers  # a batch of the config's shape
    batch_steps = steps_per_fragment * len(fragments)
    step_bytes = sum(value.nbytes for value in fragment.values() if hasattr(value, "nbytes")) / steps_per_fragment
    collate(fragments, "cpu")
    start = time.perf_counter()
    for _ in range(updates):
        batch = collate(fragments, "cpu")
    collate_s = (time.perf_counter() - start) / updates / batch_steps * 1000
    update_rate = learner_ceiling(config, batch, updates)
    spec = ALGORITHMS[config.algo]
    env = make_env(config.env.id, **config.env.options)
    model = build_model(config.model, env.observation_space, env.action_space, spec.model_head)
    env.close()
    numel = sum(parameter.numel() for parameter in model.parameters())
    stats = spec.algorithm_class(config.algo_config, model, None).learn(batch, Progress(0)).stats
    gradient_steps = float(stats.get("gradient_steps", 1)) / batch_steps * 1000
    reduce_s = all_reduce_seconds(numel, 2)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; config {name}: "
          f"{batch_steps}-step batches of {len(fragments)} fragments of {steps_per_fragment} steps")  # fmt: skip
    print("| input | value |")
    print("|---|---|")
    print(f"| bytes per env step (fragment) | {step_bytes:,.0f} |")
    print(f"| learner collate, s per 1,000 steps | {collate_s:.4f} |")
    print(f"| learner update, s per 1,000 steps ({torch.get_num_threads()} threads) | {1000 / update_rate:.3f} |")
    print(f"| gradient steps per 1,000 env steps | {gradient_steps:.1f} |")
    print(f"| gradient, parameters (bytes) | {numel:,} ({4 * numel:,}) |")
    print(f"| gloo all-reduce of it, 2 processes on loopback, s | {reduce_s:.4f} |")


# The learner levers a config can keep, and the value that turns each off.
LEVERS_OFF = {"learner_channels_last": False, "learner_precision": "fp32"}


def levers(name: str, updates: int, rounds: int) -> None:
    """A config's learner ceiling as configured and with each lever it turns on turned off
    (one at a time, then all), on one recorded batch of its shape, the cases alternating
    over ``rounds`` so that the machine's drift falls on all of them alike."""
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    user = load_yaml(find_config(name))
    config = resolve(user)
    batch = recorded_batch(config)
    ray.shutdown()
    kept = [key for key, off in LEVERS_OFF.items() if getattr(config.runtime, key) != off]
    cases = {"as configured": config}
    for key in kept:
        cases[f"without {key}"] = resolve({**user, "runtime": {**user.get("runtime", {}), key: LEVERS_OFF[key]}})
    if len(kept) > 1:
        cases["without any"] = resolve({**user, "runtime": {**user.get("runtime", {}), **LEVERS_OFF}})
    rates: dict[str, list[float]] = {case: [] for case in cases}
    for round_ in range(rounds):
        for case, case_config in cases.items():
            rates[case].append(learner_ceiling(case_config, batch, updates))
        print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr, flush=True)
    levers_on = ", ".join(f"{key}={getattr(config.runtime, key)}" for key in kept) or "none"
    print(f"{name}: {batch['rewards'].numel()}-step batches, levers kept: {levers_on}")
    print("| learner | ceiling (env steps/s, median of rounds) | as configured / this |")
    print("|---|---|---|")
    top = statistics.median(rates["as configured"])
    for case, values in rates.items():
        print(f"| {case} | {statistics.median(values):,.0f} | {top / statistics.median(values):.2f} |")


# CleanRL's Atari PPO batch (1,024 steps, 4 epochs of 256) in three layouts on this machine.
LEARNER_VARIANTS = {
    "1 worker x 8 envs, sync": ["--num-workers", "1", "--envs-per-worker", "8"],
    "1 worker x 8 envs, overlap": ["--num-workers", "1", "--envs-per-worker", "8", "--set", "ppo.async_sampling=true"],
    "2 workers x 4 envs, overlap": ["--num-workers", "2", "--envs-per-worker", "4", "--set", "ppo.async_sampling=true"],
}


def vs_learner(seconds: float, warmup_s: float, updates: int, overrides: list[str]) -> None:
    """PPO on Pong end to end against the learner's ceiling on the same batch shape, the
    ceiling measured just before and just after each end-to-end run. ``overrides``: config
    ``KEY=VALUE``s for both (``model.cnn=small``, ``env.options.screen_size=42``)."""
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    user = {
        "env": {"id": "ALE/Pong-v5"},
        "runtime": {"num_workers": 1, "envs_per_worker": 8, "fragment_length": 128},
        "ppo": {"epochs": 4, "num_minibatches": 4, "clip_coef": 0.1},
    }
    for item in overrides:
        set_dotted(user, *parse_override(item))
    config = resolve(user)
    batch = recorded_batch(config)
    rows = []
    for name, layout in LEARNER_VARIANTS.items():
        before = learner_ceiling(config, batch, updates)
        _, records = _distrl_train(
            [*PONG_PPO_ARGS[:4], *PONG_PPO_ARGS[8:], *overrides, *layout] + ["--stop-seconds", str(warmup_s + seconds)]
        )
        end_to_end = _steady_rate(records, warmup_s)
        after = learner_ceiling(config, batch, updates)
        lag = records[-1].get("policy_lag_mean", 0.0)
        rows.append((name, end_to_end, before, after, end_to_end / ((before + after) / 2), lag))
        print(f"  {name}: {end_to_end:,.0f} steps/s, ceiling {before:,.0f} / {after:,.0f}", file=sys.stderr, flush=True)
    ray.shutdown()
    print("| layout | PPO end-to-end (env steps/s) | learner ceiling before / after | end-to-end / ceiling | lag |")
    print("|---|---|---|---|---|")
    for name, end_to_end, before, after, ratio, lag in rows:
        print(f"| {name} | {end_to_end:,.0f} | {before:,.0f} / {after:,.0f} | {ratio:.2f} | {lag:.2f} |")


def sampling_only(env_id: str, workers: int, envs_per_worker: int, seconds: float) -> None:
    """distrl's side of ``pong_sampling_steps_per_s``, in a process of its own."""
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    config = resolve({"env": {"id": env_id}, "runtime": {"envs_per_worker": envs_per_worker}})
    rate = sampling(config, workers, seconds)
    ray.shutdown()
    print(json.dumps({"steps_per_s": rate}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "ALE/Pong-v5"])
    parser.add_argument("--seconds", type=float, default=15.0, help="measuring time per figure")
    parser.add_argument("--workers", type=int, default=2, help="rollout workers for the multi-worker figures")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of ceiling and sampling")
    parser.add_argument("--ceilings", action="store_true", help="only the single-process rate of each family")
    parser.add_argument("--clusters", action="store_true", help="sampling on one node vs two loopback nodes")
    parser.add_argument("--vs-rllib", action="store_true", help="distrl and RLlib side by side (needs distrl[rllib])")
    parser.add_argument("--cases", nargs="+", default=list(VS_RLLIB_CASES), help="with --vs-rllib: which cases")
    parser.add_argument(
        "--repeats", type=int, default=3, help="with --vs-rllib or --vs-sb3: runs per side of the CartPole case"
    )
    parser.add_argument("--warmup-s", type=float, default=30.0, help="with --vs-rllib: seconds before steady state")
    parser.add_argument(
        "--json", action="store_true", help="with --vs-rllib or --vs-sb3: one JSON line per case on stdout"
    )
    parser.add_argument(
        "--vs-sb3", action="store_true", help="the main job against Stable-Baselines3's PPO (needs distrl[sb3])"
    )
    parser.add_argument("--startup", action="store_true", help="the main job's start and finish, part by part")
    parser.add_argument(
        "--variant",
        metavar="NAME:KEY=VALUE,...",
        action="append",
        default=[],
        help="with --startup: environment variables of a case run alternating with the plain one",
    )
    parser.add_argument("--sampling-only", metavar="ENV", help=argparse.SUPPRESS)
    parser.add_argument("--envs-per-worker", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--vs-learner", action="store_true", help="PPO on Pong end to end vs the learner's ceiling")
    parser.add_argument("--updates", type=int, default=4, help="with --vs-learner: updates per ceiling figure")
    parser.add_argument(
        "--set", metavar="KEY=VALUE", nargs="+", default=[], help="with --vs-learner: config overrides for both sides"
    )
    parser.add_argument("--levers", metavar="CONFIG", help="a config's learner ceiling with and without its levers")
    parser.add_argument(
        "--driver-cost", action="store_true", help="the driver's CPU per fragment, per flow (CartPole, many workers)"
    )
    parser.add_argument(
        "--worker-counts", type=int, nargs="+", default=[2, 4, 8], help="with --driver-cost: the runs' worker counts"
    )
    parser.add_argument(
        "--layouts", nargs="+", default=["1 node"], choices=["1 node", "2 nodes"], help="with --driver-cost"
    )
    parser.add_argument("--scaling-inputs", metavar="CONFIG", help="the per-step inputs of docs/scaling.md's model")
    args = parser.parse_args()
    if args.scaling_inputs:
        scaling_inputs(args.scaling_inputs, args.updates)
        return
    if args.driver_cost:
        driver_cost(args.worker_counts, args.seconds, args.layouts)
        return
    if args.levers:
        levers(args.levers, args.updates, args.rounds)
        return
    if args.vs_learner:
        vs_learner(args.seconds, args.warmup_s, args.updates, args.set)
        return
    if args.vs_sb3:
        vs_sb3(args.repeats, args.json)
        return
    if args.startup:
        startup(args.repeats, args.variant)
        return
    if args.vs_rllib:
        vs_rllib(args.cases, args.repeats, args.seconds, args.warmup_s, args.json)
        return
    if args.sampling_only:
        sampling_only(args.sampling_only, args.workers, args.envs_per_worker, args.seconds)
        return
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
        print(f"{env_id}: env ceiling ...", flush=True)
        top = ceiling(env_id, args.seconds)
        print(f"{env_id}: inference ceiling and 1 worker, alternating ...", flush=True)
        infer, one, one_ratio = interleaved(config, 1, args.seconds, args.rounds)
        print(f"{env_id}: inference ceiling and {args.workers} workers, alternating ...", flush=True)
        _, many, many_ratio = interleaved(config, args.workers, args.seconds, args.rounds)
        print(f"{env_id}: PPO with {args.workers} workers ...", flush=True)
        end_to_end = ppo(env_id, args.workers, args.seconds + 5, {})
        rows.append((env_id, k, t, top, infer, one, one_ratio, many, many_ratio, end_to_end))
    ray.shutdown()

    print()
    print(
        f"machine: {platform.machine()}, {cpus} CPUs, {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, ray {ray.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )
    print(
        f"figures: env steps/s (agent steps; Atari frames = 4 x steps), {args.seconds:.0f} s per figure; "
        f"ratios: median over {args.rounds} alternating rounds\n"
    )
    w = args.workers
    print(
        f"| env | K x T per worker | env ceiling (1 process, 1 env) | inference ceiling (1 process, K envs + policy) "
        f"| sampling, 1 worker | 1 worker / inference ceiling | sampling, {w} workers "
        f"| {w} workers / ({w} x inference ceiling) | PPO end-to-end, {w} workers |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for env_id, k, t, top, infer, one, one_ratio, many, many_ratio, end_to_end in rows:
        print(
            f"| {env_id} | {k} x {t} | {top:,.0f} | {infer:,.0f} | {one:,.0f} | {one_ratio:.2f} | {many:,.0f} "
            f"| {many_ratio:.2f} | {end_to_end:,.0f} |"
        )


if __name__ == "__main__":
    main()
