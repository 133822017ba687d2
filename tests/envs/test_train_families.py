"""A short `distrl train` on every environment family: 2 real worker processes, a few
thousand steps, exit 0 and a well-formed progress.jsonl."""

import time

import psutil
import pytest

from conftest import read_progress, run_distrl
from distrl.metrics import CONTRACT_FIELDS

pytestmark = pytest.mark.slow

# (env id, frames per agent step, extra flags). Pixel runs use smaller fragments than the
# pixels preset so that a few thousand steps still make several learner updates on a CPU.
RUNS = [
    ("VizdoomBasic-v1", 4, ["--set", "runtime.envs_per_worker=4", "runtime.fragment_length=64"]),
    ("retro/Airstriker-Genesis-v0", 4, ["--envs-per-worker", "2", "--set", "runtime.fragment_length=64"]),
    ("distrl/MarketMaking-v0", 1, []),
    ("distrl/Catch-v0", 1, ["--set", "runtime.envs_per_worker=4", "runtime.fragment_length=32"]),
    ("distrl/NChain-v0", 1, []),
    ("FrozenLake-v1", 1, []),
    ("MountainCar-v0", 1, []),
]


@pytest.mark.parametrize("env_id,frames_per_step,extra", RUNS, ids=[r[0] for r in RUNS])
def test_smoke_train(tmp_path, env_id, frames_per_step, extra):
    out = tmp_path / "run"
    result = run_distrl(
        "train", "--env", env_id, "--num-workers", "2", "--stop-env-steps", "3000", "--out", str(out), *extra
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_progress(out)
    last = records[-1]
    assert all(field in last for field in CONTRACT_FIELDS)
    assert last["env_steps"] >= 3000 and last["env_frames"] == frames_per_step * last["env_steps"]
    assert last["num_workers"] == 2 and last["learner_updates"] >= 2
    assert list((out / "checkpoints").glob("ckpt-*/state.pt"))
    # Emulator processes (retro runs one per env copy) end with their workers; a few
    # seconds' grace for a process whose socket has closed to be reaped.
    deadline = time.monotonic() + 5
    while emulator_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not emulator_processes(), emulator_processes()


def emulator_processes() -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "distrl.envs.subprocess_env" in command:
            found.append(f"{process.pid}: {command}")
    return found
