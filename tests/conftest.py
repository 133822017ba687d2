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


def final_weights(out_dir: Path) -> dict:
    """The model weights of a run's newest checkpoint."""
    import torch

    newest = sorted((Path(out_dir) / "checkpoints").glob("ckpt-*"))[-1]
    return torch.load(newest / "state.pt", map_location="cpu", weights_only=True)["model"]


def read_progress(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def distrl_here(*args: str) -> subprocess.CompletedProcess:
    """``distrl ARGS`` through the command line's own code in this process, for commands that
    end before any Ray starts (bad input, plots, baselines): the same code and messages as
    in a process of its own, without the second and a half of start-up each one would spend
    importing torch. Refuses a command that did start Ray here."""
    import contextlib
    import io

    import ray

    from distrl.cli import main

    started: list[str] = []

    def tripwire(*_args, **_kwargs):  # a run that reaches Ray belongs in a process of its own
        started.append("ray.init")
        raise RuntimeError("ray.init called in the test process")

    out, err = io.StringIO(), io.StringIO()
    init, ray.init = ray.init, tripwire
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's usage errors
                code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        ray.init = init
    assert not started, f"distrl {' '.join(args)} starts Ray: run it with run_distrl"
    return subprocess.CompletedProcess(["distrl", *args], code, out.getvalue(), err.getvalue())


def popen_interruptible(command: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` of a run that a test will Ctrl-C. A process started in the
    background by a non-interactive shell (``cmd &``: a CI script, nohup) inherits SIGINT
    ignored, and Python then raises no KeyboardInterrupt: the child would never see the
    test's Ctrl-C. The child gets SIGINT's default disposition, as under a terminal (a
    Python handler becomes the default one across exec)."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(command, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt(process: subprocess.Popen, timeout: float = 120) -> str:
    """Ctrl-C a running `distrl train` and wait for it to exit; its output. A run that does not
    exit in ``timeout`` seconds is killed and the test fails with the end of what it printed
    (where it hung), rather than with a bare TimeoutExpired."""
    import signal

    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the run did not exit within {timeout:g} s of Ctrl-C; its output ends:\n{output[-3000:]}")
    return output


def assert_clean_error(result: subprocess.CompletedProcess, code: int = 2) -> None:
    """A user error: the expected exit code, one short message, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr
    assert "distrl: error:" in result.stderr, result.stderr


@pytest.fixture(scope="session")
def trained_cartpole(tmp_path_factory):
    """The core learning run: PPO on CartPole-v1 as shipped (1 rollout worker x 8 envs,
    sampling during updates), seed 1, until the mean return of the last 100 episodes reaches
    475 (budget 150,000 env steps), trained through the Python API with evaluation rounds
    every 10,000 steps. Shared by the tests of learning (tests/test_train.py) and of what
    comes after training (evaluation reports, Policy, export, plots): ``(Result, records)``,
    records being what ``on_report`` got."""
    import distrl

    records: list[dict] = []
    # The shipped config (stop at 475 or 150k steps) by name, with overrides in
    # both forms the API takes: nested dicts and dotted keys.
    result = distrl.train(
        "ppo_cartpole",
        seed=1,
        stop={"reward": 475, "env_steps": 150_000},
        output={"dir": str(tmp_path_factory.mktemp("trained") / "run")},
        on_report=records.append,
        **{"eval.every_env_steps": 10_000, "eval.episodes": 5},
    )
    return result, records
