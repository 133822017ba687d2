"""Checkpoint files on a real disk: atomic names, the newest K kept, weights_only loading,
and damaged files reported without touching anything."""

import shutil
import subprocess
import sys

import pytest
import torch

from distrl import checkpoint
from distrl.errors import CheckpointError


def state(step):
    return {
        "model": {"w": torch.full((3,), float(step))},
        "algorithm": {"optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}},
        "version": step,
        "counters": {"env_steps": 100 * step},
    }


def test_save_keeps_the_newest_and_loads_with_weights_only(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in range(1, 6):
        checkpoint.save(folder, step, state(step), "algo: ppo\n", keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(folder)] == ["ckpt-00000004", "ckpt-00000005"]
    assert not list(folder.glob(".tmp-*"))
    path, loaded = checkpoint.load(tmp_path)  # a run folder resolves to its newest checkpoint
    assert path.name == "ckpt-00000005"
    assert loaded["version"] == 5 and loaded["counters"]["env_steps"] == 500
    assert torch.equal(loaded["model"]["w"], torch.full((3,), 5.0))
    assert loaded["config_yaml"] == "algo: ppo\n"


def test_a_damaged_checkpoint_is_reported_and_left_alone(tmp_path):
    folder = tmp_path / "checkpoints"
    checkpoint.save(folder, 1, state(1), "", keep=3)
    newest = checkpoint.save(folder, 2, state(2), "", keep=3)
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable.*ckpt-00000001"):
        checkpoint.load(tmp_path)
    assert (newest / "state.pt").read_bytes() == data[: len(data) // 2]
    assert checkpoint.load(folder / "ckpt-00000001")[1]["version"] == 1


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected."""
    folder = tmp_path / "ckpt-00000001"
    folder.mkdir()
    torch.save({"format": 1, "payload": CheckpointError("not a tensor")}, folder / "state.pt")
    with pytest.raises(CheckpointError, match="unreadable") as refused:
        checkpoint.load(folder)
    # torch's advice to load it again with weights_only=False would run the file's code: left out.
    assert "does not unpickle" in str(refused.value) and "weights_only" not in str(refused.value)


def test_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="No checkpoint found"):
        checkpoint.load(tmp_path)


def test_pruning_never_removes_a_newer_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    for step in (5, 6, 7):
        checkpoint.save(folder, step, state(step), "", keep=2)
    checkpoint.save(folder, 3, state(3), "", keep=2)  # an older number written later
    assert [p.name for p in checkpoint.list_checkpoints(folder)] == ["ckpt-00000003", "ckpt-00000006", "ckpt-00000007"]


def test_a_run_folder_loads_its_newest_readable_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    for number in (1, 2, 3):
        checkpoint.save(folder, number, state(number), "", keep=3)
    for number in (2, 3):
        (folder / f"ckpt-0000000{number}" / "state.pt").write_bytes(b"not a checkpoint")
    loaded, saved, skipped = checkpoint.load_readable(tmp_path)
    assert loaded.name == "ckpt-00000001" and saved["version"] == 1
    assert [path.name for path, _ in skipped] == ["ckpt-00000003", "ckpt-00000002"]
    # One checkpoint named on its own is that one or an error, never another.
    with pytest.raises(CheckpointError, match="unreadable"):
        checkpoint.load_readable(folder / "ckpt-00000003")
    (folder / "ckpt-00000001" / "state.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="No checkpoint in .* is readable"):
        checkpoint.load_readable(tmp_path)
    aside = checkpoint.set_aside(folder / "ckpt-00000003")
    assert aside.name == "unreadable-ckpt-00000003" and (aside / "state.pt").read_bytes() == b"not a checkpoint"
    assert [p.name for p in checkpoint.list_checkpoints(folder)] == ["ckpt-00000001", "ckpt-00000002"]


FULL_DISK = """
import sys
from pathlib import Path

import torch

from distrl import checkpoint

folder = Path(sys.argv[1]) / "checkpoints"
checkpoint.save(folder, 1, {"model": {"w": torch.ones(1000)}, "counters": {}}, "", keep=3)
try:
    checkpoint.save(folder, 2, {"model": {"w": torch.ones(1_000_000)}, "counters": {}}, "", keep=3)
except checkpoint.CheckpointWriteError as error:
    print("refused:", error)
print("left:", sorted(path.name for path in folder.iterdir()))
print("loads:", float(checkpoint.load(folder / "ckpt-00000001")[1]["model"]["w"].sum()))
"""


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """A real 300 KB filesystem (tmpfs, mounted in a user namespace of the test's own, so no
    privileges are needed) that a 4 MB checkpoint does not fit."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "write.py"
    script.write_text(FULL_DISK)
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=300k tmpfs "$1" && exec "$2" "$3" "$1"', "sh",
         str(disk), sys.executable, str(script)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    refused_here = result.stderr.startswith(("unshare:", "mount:"))  # the sandbox, before Python ran
    if result.returncode != 0 and refused_here:
        pytest.skip(f"this machine does not let a user namespace mount a tmpfs: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: Could not write checkpoint ckpt-00000002" in result.stdout
    assert "No space left on device" in result.stdout and "ckpt-00000001', is intact" in result.stdout
    assert "left: ['ckpt-00000001']" in result.stdout  # no half-written folder
    assert "loads: 1000.0" in result.stdout
