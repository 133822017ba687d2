#!/usr/bin/env python
"""Two source trees of distrl, back to back on this machine: each algorithm's CartPole
time-to-475 and env steps/s, so that a change to the runtime can show it kept behaviour.

    git worktree add /tmp/distrl-old <commit>
    python scripts/compare_trees.py /tmp/distrl-old . --algos ppo a2c --seeds 1 2

For every (algorithm, seed) it runs ``python -m distrl train --algo A --env CartPole-v1
--num-workers 2 --stop-reward 475 --stop-env-steps BUDGET --seed S`` once with each tree on
PYTHONPATH, alternating which tree goes first, and prints a Markdown table of the env steps
and training seconds to the stop, and the mean env steps/s over the run's reports. Ratios
(new / old) compare like with like on a shared, noisy machine. A benchmark, not a test: it
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Each algorithm's env-step budget: the learning tests' (tests/algos/test_learning.py).
BUDGETS = {
    "ppo": 150_000,
    "a2c": 250_000,
    "a3c": 300_000,
    "impala": 400_000,
    "appo": 400_000,
    "dqn": 200_000,
    "pg": 500_000,
}


def run(tree: Path, algo: str, seed: int, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "distrl",
        "train",
        "--algo",
        algo,
        "--env",
        "CartPole-v1",
        "--num-workers",
        "2",
        "--stop-reward",
        "475",
        "--stop-env-steps",
        str(BUDGETS[algo]),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--set",
        "output.console=lines",
        "output.tensorboard=false",
    ]
    result = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        return {
            "error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        }
    reports = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]
    last = reports[-1]
    rates = [report["env_steps_per_s"] for report in reports[1:]] or [last["env_steps_per_s"]]
    solved = (last["episode_return_mean"] or 0) >= 475
    return {
        "steps": f"{last['env_steps']:,}" + ("" if solved else " (not solved)"),
        "seconds": last["time_s"],
        "steps_per_s": sum(rates) / len(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--algos", nargs="+", default=["ppo", "a2c", "a3c", "impala", "appo", "dqn"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    args = parser.parse_args()
    print(
        "| algo | seed | old: steps | old: s | old: steps/s | new: steps | new: s | new: steps/s "
        "| new/old s | new/old steps/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for index, (algo, seed) in enumerate((a, s) for a in args.algos for s in args.seeds):
            order = [("old", args.old), ("new", args.new)]
            if index % 2:
                order.reverse()  # neither tree always runs on a machine warmed by the other
            results = {name: run(tree, algo, seed, Path(folder) / f"{name}-{algo}-{seed}") for name, tree in order}
            old, new = results["old"], results["new"]
            if "error" in old or "error" in new:
                print(f"| {algo} | {seed} | {old.get('error', '')} | | | {new.get('error', '')} | | | | |", flush=True)
                continue
            print(
                f"| {algo} | {seed} | {old['steps']} | {old['seconds']:.1f} | {old['steps_per_s']:,.0f} | "
                f"{new['steps']} | {new['seconds']:.1f} | {new['steps_per_s']:,.0f} | "
                f"{new['seconds'] / old['seconds']:.2f} | {new['steps_per_s'] / old['steps_per_s']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
