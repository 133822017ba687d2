"""distrl as a library: training from Python, evaluation during training, the shipped configs,
sweeps on Ray Tune, and the wheel as a user installs it."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

import distrl
from conftest import assert_clean_error, read_progress, run_distrl
from distrl import shipped
from distrl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RAY_NOTICE = "Token authentication is enabled"


def test_train_from_python_stops_on_the_evaluation_return(trained_cartpole):
    """distrl.train with a shipped config's name and overrides in both forms (conftest.py);
    evaluation rounds are reported every 5,000 steps and the run stops on their return."""
    result, records = trained_cartpole
    assert isinstance(result, distrl.Result)
    assert result.run_dir.name == "run" and result.run_dir.is_dir()
    assert result.stop_reason.startswith("eval_return_mean"), result.stop_reason
    assert result.metrics["eval_return_mean"] >= 400
    assert result.metrics["env_steps"] < 200_000
    assert result.checkpoint is not None and (result.checkpoint / "state.pt").is_file()
    # The callback saw exactly what progress.jsonl holds, and Result.metrics is its last line.
    written = read_progress(result.run_dir)
    assert [r["env_steps"] for r in records] == [r["env_steps"] for r in written]
    assert result.metrics["env_steps"] == written[-1]["env_steps"]
    assert result.config.eval.every_env_steps == 5000 and result.config.seed == 1

    rounds = {}
    for record in written:
        assert "eval_return_mean" in record
        if record["eval_env_steps"] is not None:
            assert record["eval_env_steps"] <= record["env_steps"]
            assert 0 <= record["eval_return_mean"] <= 500
            assert record["eval_episodes"] == 5
            rounds[record["eval_env_steps"]] = record["eval_return_mean"]
    # One round per 5,000 steps asked for (a slow round delays the next; none is skipped past).
    asked = sorted(rounds)
    assert asked[0] >= 5000 and len(asked) >= 2
    assert all(later - earlier >= 5000 for earlier, later in zip(asked, asked[1:]))
    # Only the last round passed the bar: earlier ones would have stopped the run.
    assert all(value < 400 for step, value in rounds.items() if step != asked[-1])
    assert rounds[asked[-1]] >= 400


def test_config_errors_from_python_are_the_command_lines(tmp_path):
    with pytest.raises(ConfigError, match="ppo_cartpol.*Did you mean ppo_cartpole"):
        distrl.train("ppo_cartpol")
    with pytest.raises(ConfigError, match="stop.on=eval .* eval.every_env_steps"):
        distrl.train("ppo_cartpole", stop={"on": "eval", "reward": 10}, output={"dir": str(tmp_path)})
    with pytest.raises(ConfigError, match="ppo.learning_rate"):
        distrl.train(**{"ppo.learning_rate": 1e-3})


def test_shipped_configs_are_listed_and_found_by_name_from_any_folder(tmp_path):
    listed = run_distrl("configs", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = shipped.names()
    assert len(names) == len(list((ROOT / "distrl" / "configs").glob("**/*.yaml"))) > 20
    for name in names:
        line = next(line for line in listed.stdout.splitlines() if line.split()[:1] == [name])
        data = yaml.safe_load(shipped.find(name).read_text())
        assert f"{data.get('algo', 'ppo')} on " in line

    printed = run_distrl("train", "--config", "tutorials/catch_dqn", "--print-config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(printed.stdout)["env"]["id"] == "distrl/Catch-v0"

    # A file of the user's by the same name wins over the shipped one.
    (tmp_path / "ppo_cartpole").write_text("seed: 77\n")
    mine = run_distrl("train", "--config", "ppo_cartpole", "--print-config", cwd=tmp_path)
    assert yaml.safe_load(mine.stdout)["seed"] == 77

    assert_clean_error(run_distrl("train", "--config", "ppo_pongg", cwd=tmp_path))


@pytest.mark.parametrize("verbose", [False, True])
def test_an_embedded_ray_keeps_its_notices_to_verbose(verbose):
    """Ray's token-authentication notice speaks to cluster operators: an embedded run shows
    it with --verbose only (the wheel test below checks a whole quiet run's console). Ray
    prints it when token mode is on by its default; an explicit RAY_AUTH_MODE (which ray.init
    leaves in its process's environment) silences it. In a fresh process: Ray's logger keeps
    its first set-up for the life of a process."""
    code = (
        "import ray\n"
        "from distrl.runtime import cluster\n"
        f"assert cluster.connect(None, 1, verbose={verbose})\n"
        "ray.shutdown()\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (RAY_NOTICE in done.stdout + done.stderr) == verbose, done.stderr[-3000:]


def test_a_2x2_tune_sweep_writes_its_table_plot_and_best_config(tmp_path):
    out = tmp_path / "sweep"
    result = run_distrl(
        "tune",
        "--config",
        "ppo_cartpole",
        "--grid",
        "ppo.lr=1e-4,1e-3",
        "ppo.epochs=1,4",
        "--stop-env-steps",
        "3000",
        "--num-workers",
        "1",
        "--out",
        str(out),
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
        progress = read_progress(run)
        assert progress[-1]["env_steps"] >= 3000
        assert math.isclose(progress[-1]["episode_return_mean"], float(trial["episode_return_mean"]))
    # The summary is sorted best first, and the best config is that setting's.
    means = [float(row["episode_return_mean_mean"]) for row in summary]
    assert means == sorted(means, reverse=True)
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["ppo"]["lr"] == float(summary[0]["ppo.lr"]) and best["ppo"]["epochs"] == int(summary[0]["ppo.epochs"])
    assert "seed" not in best and "dir" not in best["output"]
    assert (out / "curves.png").stat().st_size > 10_000
    assert "best config:" in result.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_trains_a_shipped_config_by_name(tmp_path):
    """``pip wheel .``, installed into a new venv, run from a folder that is not the checkout.
    The new venv gets distrl from the wheel alone; its dependencies (torch, Ray) come from this
    environment's site-packages through a .pth path line, as downloading them again would take
    minutes (the closing note of the issue records a full install with dependencies)."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
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
        [str(venv / "bin" / "distrl"), "train", "--config", "ppo_cartpole", "--stop-env-steps", "20000"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert train.returncode == 0, (train.stdout[-3000:], train.stderr[-3000:])
    (run,) = (elsewhere / "runs").iterdir()
    assert read_progress(run)[-1]["env_steps"] >= 20000
    # A quiet start: distrl's own lines only (test_an_embedded_ray_keeps_its_notices_to_verbose).
    assert RAY_NOTICE not in train.stdout + train.stderr
    assert train.stdout.startswith("distrl: no stop rule") or train.stdout.startswith("distrl: ppo on")
