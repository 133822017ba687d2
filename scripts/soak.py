#!/usr/bin/env python
"""Soak run: a long PPO Pong job (configs/pong_cpu.yaml, stopped by time), with each
actor's memory and the object store sampled.

Starts a one-node Ray cluster on 127.0.0.1 (scripts/local_cluster.py), runs ``distrl train``
against it, and every ``--every`` seconds records each Ray actor's resident and unique memory
(RSS, USS) and the object store's use and spilled bytes (``ray memory --stats-only``). Writes
one JSON line per sample to ``--samples`` and prints the figures BENCHMARKS.md takes: each
process kind's memory at the end of the warm-up and at the end, and their growth.

    python scripts/soak.py                                  # 30 minutes, samples every 30 s
    python scripts/soak.py --minutes 2 --every 10 --warmup 0.5   # a quick look

A benchmark, not a test: it reports, it does not judge (the goal, after warm-up: under 5%
growth and nothing spilled). Its own cluster, stopped at the end, so it needs
``ray stop``-free ground: do not run it next to another Ray on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "scripts" / "local_cluster.py")
assert _spec is not None and _spec.loader is not None
local_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_cluster)


def actor_memory(driver_pid: int) -> dict[str, dict[str, float]]:
    """MiB per Ray actor kind (``ray::Learner`` ...) and for the driver (``distrl train``):
    summed RSS and USS over its processes."""
    kinds: dict[str, dict[str, float]] = {}
    for process in psutil.process_iter(["cmdline", "pid"]):
        command = " ".join(process.info["cmdline"] or [])
        if process.info["pid"] == driver_pid:
            kind = "driver"
        elif command.startswith("ray::"):
            kind = command.split()[0].split(".")[0]  # ray::RolloutWorker.sample -> ray::RolloutWorker
        else:
            continue
        if kind == "ray::IDLE":
            continue
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        entry = kinds.setdefault(kind, {"processes": 0, "rss_mib": 0.0, "uss_mib": 0.0})
        entry["processes"] += 1
        entry["rss_mib"] += info.rss / 2**20
        entry["uss_mib"] += info.uss / 2**20
    return kinds


def object_store(address: str) -> dict[str, float]:
    """The object store's use and what was spilled, from ``ray memory --stats-only``."""
    result = subprocess.run(
        [*local_cluster.ray_command(), "memory", "--stats-only", "--address", address],
        capture_output=True,
        text=True,
        env=local_cluster.environment(),
        timeout=120,
    )
    text = result.stdout
    used = re.search(r"Plasma memory usage (\d+) MiB", text)
    spilled = re.search(r"Spilled (\d+) MiB", text)
    return {
        "object_store_used_mib": float(used.group(1)) if used else float("nan"),
        "spilled_mib": float(spilled.group(1)) if spilled else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes before the baseline sample")
    parser.add_argument("--config", default="configs/pong_cpu.yaml", help="PPO on Pong sized for 2 cores")
    parser.add_argument("--cpus", type=int, default=3, help="CPUs the cluster declares (learner + workers)")
    parser.add_argument("--samples", type=Path, default=Path("soak.jsonl"))
    args = parser.parse_args()

    port, dashboard = local_cluster.free_port(), local_cluster.free_port()
    address = f"127.0.0.1:{port}"
    local_cluster.start_head(port, dashboard, cpus=args.cpus)
    out = Path(tempfile.mkdtemp(prefix="distrl-soak-")) / "run"
    command = [
        sys.executable,
        "-m",
        "distrl",
        "train",
        "--config",
        str(ROOT / args.config),
        "--address",
        address,
        "--out",
        str(out),
        "--set",
        f"stop.seconds={args.minutes * 60:g}",
        "--set",
        "stop.reward=null",
        "--set",
        "output.console=lines",
        "--set",
        "output.report_every_s=30",
    ]
    print("soak:", " ".join(command[2:]), flush=True)
    samples: list[dict] = []
    run = subprocess.Popen(command, env=local_cluster.environment(), stdin=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        with args.samples.open("w") as log:
            while run.poll() is None:
                time.sleep(args.every)
                sample = {
                    "minute": round((time.monotonic() - started) / 60, 2),
                    **object_store(address),
                    "actors": actor_memory(run.pid),
                }
                samples.append(sample)
                log.write(json.dumps(sample) + "\n")
                log.flush()
                print(f"soak: {json.dumps(sample)}", flush=True)
        code = run.wait()
    finally:
        if run.poll() is None:
            run.kill()
        local_cluster.stop()
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]
    samples = [s for s in samples if "ray::Learner" in s["actors"]]  # not those after the run ended
    warm = [s for s in samples if s["minute"] >= args.warmup]
    if not warm or not progress:
        print("soak: too short to compare (no sample after the warm-up)")
        return 1
    first, last = warm[0], samples[-1]
    print(f"soak: exit {code}; env_steps {progress[-1]['env_steps']:,}; return {progress[-1]['episode_return_mean']}")
    print(f"| process | at {first['minute']:.1f} min, RSS / USS MiB | at {last['minute']:.1f} min | USS growth |")
    print("|---|---|---|---|")
    for kind in sorted(last["actors"]):
        a, b = first["actors"].get(kind), last["actors"][kind]
        if not a:
            continue
        growth = (b["uss_mib"] - a["uss_mib"]) / a["uss_mib"] * 100
        print(
            f"| {kind} x{b['processes']} | {a['rss_mib']:.0f} / {a['uss_mib']:.0f} | "
            f"{b['rss_mib']:.0f} / {b['uss_mib']:.0f} | {growth:+.1f}% |"
        )
    print(
        f"| object store | {first['object_store_used_mib']:.0f} MiB | {last['object_store_used_mib']:.0f} MiB | "
        f"spilled {max(s['spilled_mib'] for s in samples):.0f} MiB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
