"""Shared test helpers. Tests use real Ray processes, real emulators and real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# An embedded Ray started by the tests advertises 127.0.0.1 only (see runtime/cluster.py);
# this must be set before Ray is imported anywhere in the test process.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# docs/environments.md's example of a user's env package; tests copy it where only they look.
USER_PACKAGE = Path(__file__).resolve().parent.parent / "examples" / "mygames"


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray for tests that drive actors directly."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def run_distrl(
    *args: str, timeout: float = 600, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the ``distrl`` command line as a user would, in its own process."""
    env = dict(env or os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "distrl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def read_progress(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_clean_error(result: subprocess.CompletedProcess, code: int = 2) -> None:
    """A user error: the expected exit code, one short message, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    assert "distrl: error:" in result.stderr, result.stderr


@pytest.fixture(scope="session")
def trained_cartpole(tmp_path_factory):
    """One PPO run on CartPole trained through the Python API, shared by the tests of what
    comes after training (stopping on evaluation, Policy, export): ``(Result, records)``,
    records being what ``on_report`` received. Evaluation rounds every 5,000 steps; the run
    stops once a round's greedy mean return reaches 400."""
    import distrl

    records: list[dict] = []
    result = distrl.train(
        "ppo_cartpole",
        seed=1,
        output={"dir": str(tmp_path_factory.mktemp("trained") / "run"), "report_every_s": 2.0},
        on_report=records.append,
        **{"eval.every_env_steps": 5000, "eval.episodes": 5, "stop.on": "eval", "stop.reward": 400},
        stop={"env_steps": 200_000},
    )
    return result, records
