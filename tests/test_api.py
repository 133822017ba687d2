"""distrl as a library: training from Python, evaluation during training, the shipped configs,
sweeps on Ray Tune, and the wheel as a user installs it."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

import distrl
from conftest import read_progress, run_distrl
from distrl import shipped
from distrl.cli import main
from distrl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RAY_NOTICE = "Token authentication is enabled"


@pytest.mark.slow
def test_train_from_python_reports_evaluation_rounds(trained_cartpole):
    """The run conftest.py trains through distrl.train, with evaluation rounds every 10,000
    steps: its Result, its callback's records, and the rounds in progress.jsonl."""
    result, records = trained_cartpole
    assert isinstance(result, distrl.Result)
    assert result.run_dir.name == "run" and result.run_dir.is_dir()
    assert result.checkpoint is not None and (result.checkpoint / "state.pt").is_file()
    assert result.config.eval.every_env_steps == 10_000 and result.config.seed == 1
    # The callback saw exactly what progress.jsonl holds, and Result.metrics is its last line.
    written = read_progress(result.run_dir)
    assert [r["env_steps"] for r in records] == [r["env_steps"] for r in written]
    assert result.metrics is records[-1] and result.progress() == written

    rounds = {}
    for record in written:
        assert "eval_return_mean" in record
        if record["eval_env_steps"] is not None:
            assert record["eval_env_steps"] <= record["env_steps"]
            assert 0 <= record["eval_return_mean"] <= 500 and record["eval_return_std"] >= 0
            assert record["eval_episodes"] == 5 and record["eval_version"] >= 1
            rounds[record["eval_env_steps"]] = record["eval_return_mean"]
    # One round per 10,000 steps asked for (a slow round delays the next; none queues up).
    asked = sorted(rounds)
    assert asked and asked[0] >= 10_000
    assert all(later - earlier >= 10_000 for earlier, later in zip(asked, asked[1:]))
    assert len(asked) >= written[-1]["env_steps"] // 10_000 - 2


def test_stop_on_eval_compares_the_reward_with_the_newest_evaluation_round():
    """The stop rule itself, on the driver's tally (the sweep test below stops real runs by
    it): with stop.on=eval the training return is not looked at."""
    from distrl.config import resolve
    from distrl.runtime.tally import RETURN_WINDOW, Tally

    config = resolve({"stop": {"reward": 100, "on": "eval"}, "eval": {"every_env_steps": 1000}})
    tally = Tally(config)
    tally.start_clock()
    tally.recent_returns.extend([500.0] * RETURN_WINDOW)  # a training return far past the bar
    assert tally.stop_reason(None) is None
    assert tally.stop_reason({"return_mean": 99.5, "env_steps": 3000}) is None
    evaluation = {"return_mean": 100.0, "env_steps": 4000}
    assert tally.stop_reason(evaluation) == "eval_return_mean 100.00 >= 100.0 (weights of env step 4,000)"
    tally.stop.on = "train"
    assert tally.stop_reason(evaluation).startswith("episode_return_mean 500.00")


def test_config_errors_from_python_are_the_command_lines(tmp_path):
    with pytest.raises(ConfigError, match="ppo_cartpol.*Did you mean ppo_cartpole"):
        distrl.train("ppo_cartpol")
    with pytest.raises(ConfigError, match="stop.on=eval .* eval.every_env_steps"):
        distrl.train("ppo_cartpole", stop={"on": "eval", "reward": 10}, output={"dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="ppo.learning_rate"):
        distrl.train(**{"ppo.learning_rate": 1e-3})


def test_shipped_configs_are_listed_and_found_by_name_from_any_folder(tmp_path, monkeypatch, capsys):
    listed = run_distrl("configs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = shipped.names()
    assert len(names) == len(list((ROOT / "distrl" / "configs").glob("**/*.yaml"))) > 20
    for name in names:
        line = next(line for line in listed.stdout.splitlines() if line.split()[:1] == [name])
        data = yaml.safe_load(shipped.find(name).read_text())
        assert f"{data.get('algo', 'ppo')} on " in line

    # The same command's code in this process (no Ray starts for these), from another folder.
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "tutorials/catch_dqn", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["env"]["id"] == "distrl/Catch-v0"
    # A file of the user's by the same name wins over the shipped one.
    (tmp_path / "ppo_cartpole").write_text("seed: 77\n")
    assert main(["train", "--config", "ppo_cartpole", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["seed"] == 77
    assert main(["train", "--config", "ppo_pongg"]) == 2
    assert "ppo_pongg" in capsys.readouterr().err


def test_an_embedded_ray_shows_its_notices_with_verbose():
    """Ray's token-authentication notice speaks to cluster operators: an embedded run shows
    it with --verbose only (the wheel test below checks that a whole run without it is
    quiet). Ray prints it when token mode is on by its default; an explicit RAY_AUTH_MODE
    (which ray.init leaves in its process's environment) silences it. In a fresh process:
    Ray's logger keeps its first set-up for the life of a process."""
    code = "import ray\nfrom distrl.runtime import cluster\nassert cluster.connect(None, 1, verbose=True)\n"
    code += "ray.shutdown()\n"
    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert RAY_NOTICE in done.stdout + done.stderr, done.stderr[-3000:]


@pytest.mark.slow
def test_a_2x2_tune_sweep_writes_its_table_plot_and_best_config(tmp_path):
    """Four trials, each a distrl run of one learner and one worker, half a CPU each, so that
    two run side by side on this 2-core machine. Each trial stops at its first evaluation
    round (--stop-on eval: any CartPole episode scores more than 1), long before its 200,000
    step budget: the evaluation stop rule, end to end; the sweep ranks by eval_return_mean.
    The budget is in steps, and the first round waits for the evaluator's process to start:
    at the shipped config's 8,000 steps/s a 20,000-step budget ran out before it had."""
    out = tmp_path / "sweep"
    budget = 200_000
    result = run_distrl(
        "tune",
        "--config",
        "ppo_cartpole",
        "--grid",
        "ppo.lr=1e-4,1e-3",
        "ppo.epochs=1,4",
        "--stop-env-steps",
        str(budget),
        "--stop-reward",
        "1",
        "--num-workers",
        "1",
        "--out",
        str(out),
        "--set",
        "stop.on=eval",
        "eval.every_env_steps=1000",
        "eval.episodes=1",
        "runtime.num_cpus_per_learner=0.49",
        "runtime.num_cpus_per_worker=0.5",
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    with open(out / "trials.csv") as handle:
        trials = list(csv.DictReader(handle))
    with open(out / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert len(trials) == 4 and len(summary) == 4
    assert {(float(t["ppo.lr"]), int(t["ppo.epochs"])) for t in trials} == {(1e-4, 1), (1e-4, 4), (1e-3, 1), (1e-3, 4)}
    for trial in trials:
        run = Path(trial["run_dir"])
        assert run.parent == out.resolve() / "trials" and not trial["error"]
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["ppo"]["lr"] == float(trial["ppo.lr"]) and config["ppo"]["epochs"] == int(trial["ppo.epochs"])
        last = read_progress(run)[-1]
        assert last["eval_return_mean"] >= 1 and 1000 <= last["eval_env_steps"] <= last["env_steps"] < budget
        assert math.isclose(last["eval_return_mean"], float(trial["eval_return_mean"]))
    # The summary is sorted best first, and the best config is that setting's.
    means = [float(row["eval_return_mean_mean"]) for row in summary]
    assert means == sorted(means, reverse=True)
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["ppo"]["lr"] == float(summary[0]["ppo.lr"]) and best["ppo"]["epochs"] == int(summary[0]["ppo.epochs"])
    assert "seed" not in best and "dir" not in best["output"]
    assert (out / "curves.png").stat().st_size > 10_000
    assert "best config:" in result.stdout


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains_a_shipped_config_by_name(tmp_path):
    """``pip wheel .``, installed into a new venv, run from a folder that is not the checkout.
    The new venv gets distrl from the wheel alone; its dependencies (torch, Ray) come from this
    environment's site-packages through a .pth path line, as downloading them again would take
    minutes (the closing note of the issue records a full install with dependencies)."""
    # Built from a copy of the sources: setuptools reuses a checkout's build/ folder, whose stale
    # files would hide a package-data rule that no longer matches.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "distrl", source / "distrl", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("distrl-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RAY_AUTH_MODE")}
    where = subprocess.run(
        [str(python), "-c", "import distrl, distrl.shipped as s; print(distrl.__file__); print(len(s.names()))"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    location, count = where.stdout.split()
    assert Path(location).is_relative_to(venv) and int(count) == len(shipped.names())
    train = subprocess.run(
        [str(venv / "bin" / "distrl"), "train", "--config", "ppo_cartpole", "--stop-env-steps", "1000"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert train.returncode == 0, (train.stdout[-3000:], train.stderr[-3000:])
    (run,) = (elsewhere / "runs").iterdir()
    assert read_progress(run)[-1]["env_steps"] >= 1000
    # A quiet start: distrl's own lines only (test_an_embedded_ray_keeps_its_notices_to_verbose).
    assert RAY_NOTICE not in train.stdout + train.stderr
    assert train.stdout.startswith("distrl: no stop rule") or train.stdout.startswith("distrl: ppo on")
