#!/usr/bin/env python
"""Chaos run: train while killing the run's own processes, then check the books.

Starts ``distrl train`` as a user would and, for ``--duration`` seconds, SIGKILLs a random
rollout worker every ``--every`` seconds (``kill -9``, as the OOM killer does); with
``--kill-learner-at S`` it also kills the learner once, S seconds in (with
``--set runtime.num_learners=N``, one of them, at random). Then it lets the run
finish and checks, over every report in progress.jsonl:

  accounting   every env step counted was learned from, lost in a dead learner's update or
               with a node, or waits in the driver's queue for the next update
               (env_steps == consumed_env_steps + lost_env_steps + waiting_env_steps)
  versions     the learner's weights version never goes back, across restores too, and no
               fragment was sampled by a version newer than the learner's (lag >= 0)
  stop rule    the run ends by its stop rule, with exit 0

    python scripts/chaos.py                                   # PPO, a worker every 10 s for 3 min
    python scripts/chaos.py --algo impala --kill-learner-at 30 --stop-env-steps 400000
    python scripts/chaos.py --duration 20 --every 5 --stop-env-steps 40000   # a quick look

Exit 0 when every check holds, 1 otherwise; prints the figures either way. For the replay flow
(dqn) ``consumed_env_steps`` counts sampled transitions, so the accounting check is skipped.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def ray_processes(root_pid: int, title: str) -> list[int]:
    """Ray processes started for the run under ``root_pid`` whose title starts with ``title``
    (Ray titles an actor's process ``ray::ClassName``)."""
    found = []
    for process in psutil.Process(root_pid).children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith(title):
                found.append(process.pid)
        except psutil.Error:
            continue
    return found


def read_progress(out: Path) -> list[dict]:
    path = out / "progress.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check(records: list[dict], algo: str, stop_env_steps: int, code: int, kills: dict[str, int]) -> list[str]:
    """What went wrong, as sentences (none: every check holds)."""
    problems = []
    if records and records[-1]["worker_restarts"] < kills["worker"]:
        problems.append(f"{kills['worker']} workers killed, {records[-1]['worker_restarts']} replaced")
    if records and records[-1]["learner_restarts"] != kills["learner"]:
        problems.append(f"{kills['learner']} learner kill(s), {records[-1]['learner_restarts']} restore(s)")
    if code != 0:
        problems.append(f"the run exited with code {code}")
    if not records:
        return problems + ["the run wrote no report"]
    if records[-1]["env_steps"] < stop_env_steps:
        problems.append(f"the run stopped at {records[-1]['env_steps']:,} env steps, before its stop rule")
    if algo != "dqn":
        for record in records:
            accounted = record["consumed_env_steps"] + record["lost_env_steps"] + record["waiting_env_steps"]
            if record["env_steps"] != accounted:
                problems.append(
                    f"at {record['time_s']} s: {record['env_steps']:,} steps counted, {accounted:,} accounted for"
                )
                break
    versions = [record["learner_version"] for record in records]
    if any(later < earlier for earlier, later in zip(versions, versions[1:])):
        problems.append(f"the learner's version went back: {versions}")
    # The learner's version minus the version that sampled each fragment: negative if a
    # restored learner's weights were numbered below what workers held (they would refuse them).
    negative = [record["time_s"] for record in records if record["policy_lag_mean"] < 0]
    if negative:
        problems.append(f"negative policy lag (workers ahead of the learner) at {negative[:5]} s")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--stop-env-steps", type=int, default=600_000)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between worker kills")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of killing, from the first report")
    parser.add_argument("--kill-learner-at", type=float, default=None, help="kill the learner once, this many s in")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--set", action="append", default=[], help="passed on to distrl train")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="distrl-chaos-")) / "run"
    command = [
        sys.executable,
        "-m",
        "distrl",
        "train",
        "--algo",
        args.algo,
        "--env",
        args.env,
        "--num-workers",
        str(args.num_workers),
        "--stop-env-steps",
        str(args.stop_env_steps),
        "--seed",
        str(args.seed),
        "--out",
        str(out),
        "--set",
        "output.report_every_s=1",
        "--set",
        "output.console=lines",
        *[item for pair in args.set for item in ("--set", pair)],
    ]
    print("chaos:", " ".join(command[2:]), flush=True)
    run = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    rng = random.Random(args.seed)
    worker_kills = learner_kills = 0
    try:
        while not read_progress(out):  # the first report: every actor is up
            if run.poll() is not None:
                break
            time.sleep(0.2)
        started = time.monotonic()
        next_kill = started + args.every
        learner_due = None if args.kill_learner_at is None else started + args.kill_learner_at
        while run.poll() is None and time.monotonic() - started < args.duration:
            now = time.monotonic()
            if learner_due is not None and now >= learner_due:
                # With runtime.num_learners > 1, any one of them: the others lose their group too.
                victims = ray_processes(run.pid, "ray::Learner")
                if victims:
                    victim = rng.choice(victims)
                    psutil.Process(victim).send_signal(signal.SIGKILL)
                    learner_kills += 1
                    print(
                        f"chaos: killed a learner (pid {victim}, one of {len(victims)}) at {now - started:.0f} s",
                        flush=True,
                    )
                learner_due = None
            if now >= next_kill:
                victims = ray_processes(run.pid, "ray::RolloutWorker")
                if victims:
                    victim = rng.choice(victims)
                    try:
                        psutil.Process(victim).send_signal(signal.SIGKILL)
                        worker_kills += 1
                    except psutil.NoSuchProcess:
                        pass
                next_kill += args.every
            time.sleep(0.1)
        code = run.wait(timeout=3600)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=60)
    records = read_progress(out)
    last = records[-1] if records else {}
    figures = {
        "worker_kills": worker_kills,
        "learner_kills": learner_kills,
        "worker_restarts": last.get("worker_restarts"),
        "learner_restarts": last.get("learner_restarts"),
        "env_steps": last.get("env_steps"),
        "consumed_env_steps": last.get("consumed_env_steps"),
        "lost_env_steps": last.get("lost_env_steps"),
        "waiting_env_steps": last.get("waiting_env_steps"),
        "learner_version": last.get("learner_version"),
        "episode_return_mean": last.get("episode_return_mean"),
        "time_s": last.get("time_s"),
        "reports_checked": len(records),
        "out": str(out),
    }
    print("chaos: figures " + json.dumps(figures), flush=True)
    problems = check(records, args.algo, args.stop_env_steps, code, {"worker": worker_kills, "learner": learner_kills})
    for problem in problems:
        print(f"chaos: FAILED: {problem}", flush=True)
    if not problems:
        print("chaos: every check holds", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
