"""Weights & Biases logging (output.wandb): real training runs in W&B's offline mode, whose
files are read back and compared with the run's TensorBoard events and progress.jsonl. Nothing
goes over the network: the runs are offline, by config and by WANDB_MODE."""

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_distrl
from distrl.config import parse_override, resolve, set_dotted
from distrl.errors import ConfigError
from distrl.metrics import WANDB_ID_FILE, scalars

wandb_internal_pb2 = pytest.importorskip("wandb.proto.wandb_internal_pb2")
event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def offline_env(tmp_path: Path) -> dict:
    """The test's environment: W&B offline, and its config and cache kept out of $HOME."""
    return dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
        WANDB_DATA_DIR=str(tmp_path / "wandb-data"),
    )


def read_wandb_log(path: Path) -> list:
    """The records of a W&B transaction log (``run-ID.wandb``): a 7-byte header (``:W&B``,
    magic, version), then LevelDB-log records in 32 KiB blocks, each with a 7-byte header
    (CRC32, length, type: 1 full, 2 first, 3 middle, 4 last), each record a protobuf
    ``wandb_internal_pb2.Record``. wandb no longer ships a Python reader for it."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(records: list) -> list[tuple[int, dict[str, float]]]:
    """(step, {metric: value}) for each logged row, without W&B's own ``_step``, ``_runtime``..."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        items = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        rows.append((record.history.step.num, {k: v for k, v in items.items() if not k.startswith("_")}))
    return rows


def read_tensorboard(folder: Path) -> dict[int, dict[str, float]]:
    """{step: {tag: value}} from the TFRecord event files in ``folder`` (each record: u64 length,
    u32 CRC, an ``Event`` protobuf, u32 CRC)."""
    steps: dict[int, dict[str, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                steps.setdefault(event.step, {})[value.tag] = value.simple_value
    return steps


def offline_runs(out: Path) -> list[Path]:
    return sorted((out / "wandb").glob("offline-run-*"))


def the_run_record(records: list):
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    return run


def assert_same_as_tensorboard(rows, tb: dict[int, dict[str, float]], progress: list[dict]) -> None:
    """Each W&B row is a report: at its env_steps, under exactly the TensorBoard tags, with
    the same values (TensorBoard keeps float32)."""
    assert [step for step, _ in rows] == [record["env_steps"] for record in progress]
    for (step, logged), record in zip(rows, progress):
        assert set(logged) == set(tb[step]), (step, sorted(set(logged) ^ set(tb[step])))
        assert logged == pytest.approx(tb[step], rel=1e-6, abs=1e-6)
        assert logged == pytest.approx(scalars(record))


def test_scalars_names_the_charts_and_the_learner_statistics():
    record = {
        "env_steps": 512,
        "episode_return_mean": math.nan,  # no episode finished yet: left out
        "env_steps_per_s": 100,
        "policy_lag_mean": 0.5,
        "learner_updates": 3,  # not charted
        "learner": {"policy_loss": -0.25, "grad_norm": math.inf},
    }
    assert scalars(record) == {
        "charts/env_steps_per_s": 100.0,
        "charts/policy_lag_mean": 0.5,
        "losses/policy_loss": -0.25,
    }


def test_wandb_keys_are_set_from_the_command_line():
    user: dict = {}
    for text in ["output.wandb.project=x", "output.wandb.mode=offline", "output.wandb.tags=a,b"]:
        set_dotted(user, *parse_override(text))
    wb = resolve(user).output.wandb
    assert (wb.project, wb.entity, wb.mode, wb.group, wb.tags) == ("x", None, "offline", None, ["a", "b"])
    assert resolve({}).output.wandb.project is None  # off by default
    with pytest.raises(ConfigError, match=r"'output.wandb.mode' must be one of online, offline, disabled"):
        resolve({"output": {"wandb": {"mode": "ofline"}}})
    with pytest.raises(ConfigError, match=r"Did you mean 'output.wandb.project'"):
        resolve({"output": {"wandb": {"projekt": "x"}}})


# Runs a MetricsWriter with W&B offline in a fresh process whose every name lookup is recorded
# (and refused), without WANDB_MODE in its environment: output.wandb.mode alone must keep it local.
NO_NETWORK_SCRIPT = """
import atexit, json, socket, sys
from pathlib import Path
looked_up = []
def refuse(host, *args, **kwargs):
    looked_up.append(host)
    raise OSError("no network in this test")
socket.getaddrinfo = refuse
# Registered first, so it runs last at exit: after wandb's own exit handlers (its analytics flush).
atexit.register(lambda: print("LOOKED_UP", json.dumps(looked_up), flush=True))
from distrl.config import resolve
from distrl.metrics import MetricsWriter
out = Path(sys.argv[1])
config = resolve({"output": {"wandb": {"project": "distrl-test", "mode": "offline"}}})
writer = MetricsWriter(out, tensorboard=True, console="lines", total_env_steps=None, config=config)
for step in (100, 200):
    writer.write({"time_s": 1.0, "env_steps": step, "episodes": 3, "episode_return_mean": 9.5,
                  "env_steps_per_s": 50.0, "learner_updates": 1, "policy_lag_mean": 0.0, "num_workers": 1,
                  "learner": {"policy_loss": -0.1}})
writer.close()
"""


def test_an_offline_run_looks_up_no_host(tmp_path):
    env = offline_env(tmp_path)
    del env["WANDB_MODE"]
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("LOOKED_UP")]
    assert json.loads(line.split(" ", 1)[1]) == [], result.stdout
    assert "wandb:" not in result.stdout + result.stderr
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    (folder,) = offline_runs(tmp_path)
    rows = wandb_history(read_wandb_log(folder / f"run-{run_id}.wandb"))
    expected = {
        "charts/episode_return_mean": 9.5,
        "charts/env_steps_per_s": 50.0,
        "charts/policy_lag_mean": 0.0,
        "charts/num_workers": 1.0,
        "losses/policy_loss": -0.1,
    }
    assert rows == [(100, expected), (200, expected)]
    assert read_tensorboard(tmp_path / "tb") == {100: pytest.approx(expected), 200: pytest.approx(expected)}


WANDB_KEYS = ("output.wandb.project=distrl-test", "output.wandb.mode=offline", "output.wandb.tags=[ci,cartpole]")


def check_offline_wandb_run(out: Path, first, progress: list[dict], second, resumed_progress: list[dict]) -> None:
    """The W&B side of a run trained with ``WANDB_KEYS`` in ``offline_env`` and then resumed
    once (tests/test_train.py's resume test, which trains those two runs anyway): W&B logged
    exactly the TensorBoard scalars at the reports' env_steps, with the run's config, and the
    resumed run went on logging to the same W&B run id."""
    # W&B's own banners stay off distrl's console; distrl says where the offline run is.
    assert "wandb:" not in first.stdout + first.stderr, first.stdout + first.stderr
    assert "W&B: offline run" in first.stdout and "wandb sync" in first.stdout, first.stdout

    run_id = (out / WANDB_ID_FILE).read_text().strip()
    folder = offline_runs(out)[0]
    assert folder.name.endswith("-" + run_id)
    records = read_wandb_log(folder / f"run-{run_id}.wandb")
    run = the_run_record(records)
    assert (run.run_id, run.project, run.display_name) == (run_id, "distrl-test", out.name)
    assert list(run.tags) == ["ci", "cartpole"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["algo"] == "ppo" and config["stop"]["env_steps"] == 6000 and "ppo" in config
    assert config["output"]["wandb"]["project"] == "distrl-test"
    (exit_record,) = [r.exit for r in records if r.WhichOneof("record_type") == "exit"]
    assert exit_record.exit_code == 0

    rows = wandb_history(records)
    tb = read_tensorboard(out / "tb")
    assert_same_as_tensorboard(rows, tb, progress)
    tags = set().union(*(logged for _, logged in rows))
    assert "charts/episode_return_mean" in tags and "losses/policy_loss" in tags, sorted(tags)

    # --resume goes on in the same folder, and so with the same W&B run: a second offline
    # segment of that id (`wandb sync` uploads the segments in order, as one run).
    assert "wandb:" not in second.stdout + second.stderr
    assert (out / WANDB_ID_FILE).read_text().strip() == run_id
    folders = offline_runs(out)
    assert len(folders) == 2 and all(f.name.endswith("-" + run_id) for f in folders), folders
    (resumed,) = [f for f in folders if f != folder]
    records = read_wandb_log(resumed / f"run-{run_id}.wandb")
    assert the_run_record(records).run_id == run_id
    assert_same_as_tensorboard(wandb_history(records), read_tensorboard(out / "tb"), resumed_progress)


def test_without_wandb_installed_the_run_stops_with_the_install_hint(tmp_path):
    # A package named wandb that cannot be imported, ahead of the installed one on the path.
    shadow = tmp_path / "shadow" / "wandb"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'wandb'\")\n")
    env = offline_env(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadow.parent), env.get("PYTHONPATH")]))
    out = tmp_path / "run"
    result = run_distrl("train", "--out", str(out), "--set", "output.wandb.project=distrl-test", env=env)
    assert_clean_error(result, 2)
    assert "pip install 'distrl[wandb]'" in result.stderr, result.stderr
    assert not (out / "progress.jsonl").exists() or not (out / "progress.jsonl").read_text()
