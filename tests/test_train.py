"""Whole training runs through the command line, as a user starts them: a real embedded
Ray, real worker processes, real environments, real files."""

import json
import subprocess
import sys
import time

import pytest
import torch

from conftest import assert_clean_error, distrl_here, interrupt, popen_interruptible, read_progress, run_distrl
from distrl import checkpoint
from distrl.metrics import CONTRACT_FIELDS

pytestmark = pytest.mark.slow


def assert_contract(records):
    for record in records:
        missing = [field for field in CONTRACT_FIELDS if field not in record]
        assert not missing, missing
    steps = [r["env_steps"] for r in records]
    assert steps == sorted(steps)


def test_cartpole_ppo_reaches_475_within_150k_steps(trained_cartpole):
    """The learning test of the core issue. Budget: 150,000 env steps. The run (conftest.py)
    is started through distrl.train, the layer under `distrl train`, on the shipped config:
    one worker of 8 envs sampling the next batch during each update (policy lag 1)."""
    result, _ = trained_cartpole
    out = result.run_dir
    records = read_progress(out)
    assert_contract(records)
    last = records[-1]
    assert last["episode_return_mean"] >= 475, last
    assert result.stop_reason.startswith("episode_return_mean"), result.stop_reason
    assert last["env_steps"] <= 150_000 + 2 * 8 * 32  # at most the batch in flight past the budget
    assert last["num_workers"] == 1 and last["num_nodes"] == 1 and 0.5 < last["policy_lag_mean"] <= 1
    assert (out / "config.yaml").is_file() and list((out / "tb").glob("events.out.tfevents.*"))
    assert list((out / "checkpoints").glob("ckpt-*/state.pt"))


def test_a_run_says_how_long_it_took_to_start_and_to_finish(trained_cartpole):
    """OUT/startup.json (runtime/startup.py): the parts of the start, the training between,
    and the parts of the finish, each a real span of this run."""
    result, records = trained_cartpole
    timing = json.loads((result.run_dir / "startup.json").read_text())
    start, finish = timing["start"], timing["finish"]
    assert list(start) == [
        "process launch to run()",
        "ray start",
        "workers: processes and envs",
        "learner: model and first weights",
        "other set-up",
        "first update: sampling and learning",
    ], start
    # Ray's shutdown is a part when the run started its own Ray (in this test process, Ray
    # may be up already).
    started_ray = "ray shutdown" in finish
    assert list(finish) == ["final report and checkpoint", "closing workers"] + ["ray shutdown"] * started_ray
    assert all(seconds >= 0 for seconds in [*start.values(), *finish.values()])
    assert timing["launch_to_training_s"] == pytest.approx(sum(start.values()), abs=0.01)
    assert timing["stop_to_end_s"] == pytest.approx(sum(finish.values()), abs=0.01)
    # Workers and learner are real processes: they take time to start. Training is the span
    # the reports cover (they start with the first update, a part of the start).
    assert start["workers: processes and envs"] > 0.1
    assert start["ray start"] > 0.1 or not started_ray
    assert timing["training_s"] == pytest.approx(records[-1]["time_s"], abs=1.5)


def test_checkpoint_resume_with_other_worker_count_and_eval(tmp_path):
    """Also logs to W&B, offline: test_wandb.py checks what the two runs logged there."""
    from test_wandb import WANDB_KEYS, check_offline_wandb_run, offline_env  # skips without wandb

    out = tmp_path / "run"
    wandb_env = offline_env(tmp_path)
    # The first run writes to a relative folder; the resume happens from another folder.
    first = run_distrl(
        "train",
        "--num-workers",
        "2",
        "--stop-env-steps",
        "6000",
        "--out",
        "run",
        "--set",
        "output.report_every_s=0.5",
        *WANDB_KEYS,
        cwd=tmp_path,
        env=wandb_env,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = read_progress(out)
    (saved,) = list((out / "checkpoints").glob("ckpt-*"))
    meta = json.loads((saved / "meta.json").read_text())
    assert meta["env_steps"] == before[-1]["env_steps"] and meta["learner_updates"] == before[-1]["learner_updates"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    second = run_distrl(
        "train",
        "--resume",
        str(out),
        "--num-workers",
        "1",
        "--stop-env-steps",
        "12000",
        "--set",
        "output.report_every_s=0.5",
        cwd=elsewhere,
        env=wandb_env,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert not list(elsewhere.iterdir()), "the resumed run wrote outside its run folder"
    after = read_progress(out)[len(before) :]
    assert after, "the resumed run wrote no progress"
    assert after[0]["env_steps"] > before[-1]["env_steps"]
    assert after[0]["learner_updates"] > before[-1]["learner_updates"]
    assert after[0]["episodes"] >= before[-1]["episodes"] and after[0]["time_s"] > before[-1]["time_s"]
    assert after[-1]["env_steps"] >= 12000 and after[-1]["num_workers"] == 1
    assert_contract(before + after)
    check_offline_wandb_run(out, first, before, second, after)

    evaluated = run_distrl("eval", str(out), "--episodes", "3")
    assert evaluated.returncode == 0, evaluated.stderr
    lines = dict(line.split(": ", 1) for line in evaluated.stdout.splitlines() if ": " in line)
    assert lines["episodes"] == "3"
    assert 1 <= float(lines["return mean"]) <= 500 and float(lines["return std"]) >= 0

    # A damaged newest checkpoint: eval of it is a clear error, exit 2, and nothing on disk is
    # touched; --resume of the run folder goes back to the newest one that loads, says so,
    # and keeps the damaged one aside.
    *_, previous, newest = sorted((out / "checkpoints").glob("ckpt-*"))
    damaged = (newest / "state.pt").read_bytes()[:100]
    (newest / "state.pt").write_bytes(damaged)
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert_clean_error(distrl_here("eval", str(newest)))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == kept
    rows_before = len(read_progress(out))
    from_steps = json.loads((previous / "meta.json").read_text())["env_steps"]
    result = run_distrl("train", "--resume", str(out), "--stop-env-steps", str(from_steps + 3000))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{newest.name}' is unreadable" in result.stdout and f"resuming from '{previous}'" in result.stdout
    assert (out / "checkpoints" / f"unreadable-{newest.name}" / "state.pt").read_bytes() == damaged
    resumed = read_progress(out)[rows_before:]
    assert from_steps < resumed[0]["env_steps"] and resumed[-1]["env_steps"] >= from_steps + 3000

    # Resuming an older checkpoint into the same folder would write over newer ones.
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    oldest = sorted((out / "checkpoints").glob("ckpt-*"))[0]
    result = distrl_here("train", "--resume", str(oldest), "--stop-env-steps", "20000")
    assert_clean_error(result)
    assert "newer checkpoints" in result.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == kept


def test_a_seeded_run_with_one_worker_is_reproduced_exactly(tmp_path):
    """A synchronous algorithm with one rollout worker and a fixed seed: the same episodes,
    the same returns and bit-identical weights (the workers seed torch's sampling too)."""
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        result = run_distrl(
            "train", "--algo", "a2c", "--num-workers", "1", "--stop-env-steps", "3000", "--seed", "11",
            "--out", str(out),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        last = read_progress(out)[-1]
        _, state = checkpoint.load(out)
        runs.append((last, state["model"]))
    (first, first_model), (second, second_model) = runs
    for key in ("env_steps", "episodes", "episode_return_mean", "learner_updates"):
        assert first[key] == second[key], key
    assert first_model.keys() == second_model.keys()
    assert all(torch.equal(first_model[name], second_model[name]) for name in first_model)


def test_a_seeded_overlapping_run_does_not_depend_on_when_reports_fall_due(tmp_path):
    """With async_sampling (the default job's) the driver waits for the update in flight when a
    report is due; the next fragments still sample with the weights from before it, so a run
    that reports after nearly every update and one that never does learn the same weights."""
    states = []
    for name, every_s in (("often", "0.01"), ("never", "1000")):
        out = tmp_path / name
        result = run_distrl(
            "train", "--stop-env-steps", "6000", "--seed", "7", "--out", str(out),
            "--set", "ppo.async_sampling=true", f"output.report_every_s={every_s}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        states.append((read_progress(out), checkpoint.load(out)[1]["model"]))
    (often, often_model), (never, never_model) = states
    assert len(often) > 10 * len(never)  # the waits happened
    assert often[-1]["env_steps"] == never[-1]["env_steps"] and often[-1]["episodes"] == never[-1]["episodes"]
    assert all(torch.equal(often_model[name], never_model[name]) for name in often_model)


def test_async_sampling_overlaps_and_reuse_of_a_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    result = run_distrl(
        "train",
        "--stop-env-steps",
        "8000",
        "--out",
        str(out),
        "--set",
        "ppo.async_sampling=true",
        "output.report_every_s=0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_progress(out)
    assert_contract(records)
    lags = [r["policy_lag_mean"] for r in records]
    assert all(0 <= lag <= 1 for lag in lags) and max(lags) > 0, lags
    (saved,) = list((out / "checkpoints").glob("ckpt-*"))
    assert json.loads((saved / "meta.json").read_text())["learner_updates"] == records[-1]["learner_updates"]

    again = distrl_here("train", "--stop-env-steps", "1000", "--out", str(out))
    assert_clean_error(again)
    assert "already holds a run" in again.stderr
    assert read_progress(out) == records


def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path):
    out = tmp_path / "run"
    process = popen_interruptible(
        [
            sys.executable,
            "-m",
            "distrl",
            "train",
            "--stop-env-steps",
            "10000000",
            "--out",
            str(out),
            "--set",
            "output.report_every_s=0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((out / "progress.jsonl").is_file() and (out / "progress.jsonl").read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        output = interrupt(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    (saved,) = list((out / "checkpoints").glob("ckpt-*"))
    assert json.loads((saved / "meta.json").read_text())["env_steps"] >= read_progress(out)[-1]["env_steps"]


def test_atari_pong_smoke_run(tmp_path):
    pytest.importorskip("ale_py")
    out = tmp_path / "pong"
    result = run_distrl(
        "train",
        "--env",
        "ALE/Pong-v5",
        "--num-workers",
        "2",
        "--stop-env-steps",
        "3000",
        "--out",
        str(out),
        "--set",
        "runtime.envs_per_worker=4",
        "runtime.fragment_length=64",
        "output.report_every_s=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_progress(out)
    assert_contract(records)
    last = records[-1]
    assert last["env_steps"] >= 3000 and last["env_frames"] == 4 * last["env_steps"]
    assert (out / "config.yaml").read_text().count("kind: cnn") == 1


def test_no_stop_rule_means_the_env_reward_threshold():
    result = distrl_here("train", "--print-config")
    assert result.returncode == 0
    assert "reward: 475.0" in result.stdout and "reward threshold" in result.stdout


def test_the_phases_account_for_each_processes_time(trained_cartpole):
    """Each kind of process times its own phases (runtime/phases.py); over the run they add
    up to its wall time (5%), the bound names one of them, and costs are per 1,000 steps."""
    _, records = trained_cartpole
    last = records[-1]
    assert set(last["phase_coverage"]) == {"worker", "learner", "driver"}, last["phase_coverage"]
    for kind, coverage in last["phase_coverage"].items():
        assert abs(coverage - 1.0) < 0.05, (kind, last["phase_coverage"], last["phases"])
    assert last["bound"] in last["phases"]
    env = last["phases"]["worker.env_step"]
    assert env["share"] > 0 and env["s_per_1k_steps"] > 0
    # PPO's driver has nothing to do while the learner updates: it is blocked on it, and that
    # counts as its wait (not as its own work, the flow phase).
    phases = last["phases"]
    assert phases["driver.wait"]["share"] >= 0.9 * phases["learner.update"]["share"], phases
