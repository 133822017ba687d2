"""Killing the run's own actors with SIGKILL, as an OOM killer or a crashed node would: Ray
restarts the learner, the parameter server and replay shards, and the run restores what they
held and goes on. Each test drives the command line and kills real processes."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import read_progress

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location("chaos", ROOT / "scripts" / "chaos.py")
chaos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chaos)


def _train_and_kill(out, args: list[str], kills: list[tuple[str, int]]) -> tuple[int, str]:
    """Start ``distrl train``; for each ``(title, updates)``, once progress shows that many
    learner updates, SIGKILL the first process with that title. Returns (exit code, output)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "distrl", "train", "--out", str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        for title, updates in kills:
            while True:
                assert process.poll() is None and time.monotonic() < deadline, f"the run ended before killing {title}"
                records = read_progress(out) if (out / "progress.jsonl").is_file() else []
                if records and records[-1]["learner_updates"] >= updates:
                    break
                time.sleep(0.2)
            (victim, *_) = chaos.ray_processes(process.pid, title)
            psutil.Process(victim).send_signal(signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, output


COMMON = ["--env", "CartPole-v1", "--num-workers", "2", "--seed", "1"]
FAST_REPORTS = ["--set", "output.report_every_s=0.5"]
# A copy of the learner's state every second: the restore goes back at most a second.
FREQUENT_SNAPSHOTS = ["--set", "runtime.learner_snapshot_every_s=1"]


@pytest.mark.parametrize("algo", ["ppo", "a3c"])  # IMPALA's stream: the chaos test below
def test_a_killed_learner_is_restored_and_the_run_goes_on(tmp_path, algo):
    """With the default snapshot interval the restore goes back to the state at set-up,
    version 0, while workers hold version 20 or more: the restored weights must still be
    numbered past theirs, or workers would refuse them (a negative lag in the check)."""
    out = tmp_path / algo
    code, output = _train_and_kill(
        out,
        ["--algo", algo, *COMMON, "--stop-env-steps", "40000", *FAST_REPORTS],
        [("ray::Learner", 20)],
    )
    records = read_progress(out)
    # The books balance at every report (chaos.check: exit 0, the stop rule reached, every
    # counted step learned from, lost in the dead learner's update or queued; versions only
    # increase; one restore for the one kill).
    assert not chaos.check(records, algo, 40000, code, {"worker": 0, "learner": 1}), output[-3000:]
    assert "Ray restarted it" in output
    restored = [record for record in records if record["learner_restarts"]]
    assert restored and restored[-1]["learner_updates"] > restored[0]["learner_updates"], "no update after the restore"


def test_killed_parameter_server_replay_shard_and_learner_of_a_replay_run(tmp_path):
    out = tmp_path / "dqn"
    code, output = _train_and_kill(
        out,
        [
            "--algo",
            "dqn",
            *COMMON,
            "--stop-env-steps",
            "12000",
            *FAST_REPORTS,
            *FREQUENT_SNAPSHOTS,
            "--set",
            "dqn.learning_starts=1000",
            "--set",
            "dqn.replay_shards=2",
        ],
        [("ray::ParameterServer", 50), ("ray::ReplayBuffer", 200), ("ray::Learner", 400)],
    )
    assert code == 0, output[-3000:]
    last = read_progress(out)[-1]
    assert last["parameter_server_restarts"] == 1, last
    assert last["replay_shard_restarts"] == 1, last
    assert last["learner_restarts"] == 1, last
    assert last["env_steps"] >= 12000


def test_chaos_kills_workers_and_the_learner_and_every_step_is_accounted_for(tmp_path):
    """scripts/chaos.py on IMPALA's stream: a worker killed every 4 s and the learner once;
    the script checks the books (each counted step learned from, lost or queued; versions
    only increase; the stop rule reached) and exits 1 if they do not balance."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--algo",
            "impala",
            "--stop-env-steps",
            "200000",
            "--every",
            "4",
            "--duration",
            "17",
            "--kill-learner-at",
            "6",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "chaos: every check holds" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("chaos: figures ")]
    figures = json.loads(line.removeprefix("chaos: figures "))
    assert figures["worker_kills"] >= 3 and figures["worker_restarts"] >= figures["worker_kills"], figures
    assert figures["learner_kills"] == figures["learner_restarts"] == 1, figures
    assert "replaced it" in result.stdout + result.stderr


def test_past_the_restart_limit_a_dead_learner_ends_the_run_naming_its_checkpoint(tmp_path):
    out = tmp_path / "run"
    code, output = _train_and_kill(
        out,
        [
            "--algo",
            "ppo",
            *COMMON,
            "--stop-env-steps",
            "1000000",
            *FAST_REPORTS,
            "--set",
            "runtime.max_learner_restarts=0",
            "--set",
            "output.checkpoint_every_s=1",
        ],
        [("ray::Learner", 20)],
    )
    assert code == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    newest = max((out / "checkpoints").glob("ckpt-*"))
    assert "The learner process died" in output and f"--resume {out}" in output, output[-2000:]
    assert (newest / "state.pt").is_file()
