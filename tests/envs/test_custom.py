"""The user's own environment, in a package that only the test's PYTHONPATH knows, trained in
each of the three forms (docs/environments.md, "Your own environment") on two workers: every
worker is its own process and must import the package itself."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import USER_PACKAGE, assert_clean_error, distrl_here, read_progress, run_distrl


@pytest.fixture
def user_package(tmp_path) -> dict:
    """``usergames.envs`` in a folder of its own, reachable through PYTHONPATH only."""
    root = tmp_path / "site"
    shutil.copytree(USER_PACKAGE, root / "usergames")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}


def train(out: Path, env: dict, *settings: str, target: float, algo: str = "ppo") -> dict:
    result = run_distrl(
        "train",
        "--algo",
        algo,
        "--num-workers",
        "2",
        "--stop-reward",
        str(target),
        "--stop-env-steps",
        "40000",
        "--seed",
        "1",
        "--out",
        str(out),
        "--set",
        *settings,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_progress(out)[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, length",
    [
        (("env.id=usergames.envs:GuessSign-v0",), 10),
        (("env.id=GuessSign-v0", "env.imports=usergames.envs"), 10),
        (("env.id=MyGuess-v0", "env.entry_point=usergames.envs:make", "env.options.length=20"), 20),
    ],
    ids=["module-form", "imports", "entry-point"],
)
def test_each_form_trains_the_users_env_on_two_workers(user_package, tmp_path, settings, length):
    # The stated return: 90% of the best score, against random play's 50%.
    last = train(tmp_path / "run", user_package, *settings, target=0.9 * length)
    assert last["num_workers"] == 2
    assert last["episode_return_mean"] >= 0.9 * length, last
    # distrl eval, a process of its own, imports the env from the run's config the same way.
    evaluated = run_distrl("eval", str(tmp_path / "run"), "--episodes", "5", "--greedy", env=user_package)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]


def test_baseline_imports_the_users_env(user_package):
    baseline = run_distrl("baseline", "usergames.envs:GuessSign-v0", "--episodes", "5", env=user_package)
    assert baseline.returncode == 0, baseline.stderr[-2000:]
    assert "return mean" in baseline.stdout


def test_a_misspelled_module_gets_one_paragraph_naming_it(user_package, tmp_path):
    result = run_distrl("train", "--env", "usergames.envz:GuessSign-v0", "--out", str(tmp_path / "x"), env=user_package)
    assert_clean_error(result)
    assert "'usergames.envz'" in result.stderr and "the driver" in result.stderr
    result = run_distrl(
        "train", "--env", "GuessSign-v0", "--set", "env.imports=usergames.nope", "--out", str(tmp_path / "y"),
        env=user_package,
    )  # fmt: skip
    assert_clean_error(result)
    assert "'usergames.nope'" in result.stderr


def test_an_unknown_id_names_the_forms_for_your_own_env(tmp_path):
    result = distrl_here("train", "--env", "GuessSign-v0", "--out", str(tmp_path / "x"))
    assert_clean_error(result)
    assert "env.imports" in result.stderr and "env.entry_point" in result.stderr


def test_an_entry_point_may_not_take_over_a_known_id(user_package, tmp_path):
    result = run_distrl(
        "train", "--set", "env.entry_point=usergames.envs:make", "--out", str(tmp_path / "x"), env=user_package
    )
    assert_clean_error(result)
    assert "CartPole-v1" in result.stderr and "already registered" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_dict_observations_train_with_one_encoder_per_part(user_package, tmp_path, algo):
    # LampAndSwitch pays only a policy that reads both parts together (random play: 5 of 10).
    # A Tuple travels the same way, packed (tests/envs/test_packed.py). DQN's replay stores the
    # packed rows: it passed 9 at 9.0k-9.5k env steps on seeds 1-3, within the 40k budget.
    last = train(tmp_path / "run", user_package, "env.id=usergames.envs:LampAndSwitch-v0", target=9.0, algo=algo)
    assert last["episode_return_mean"] >= 9.0, last


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "impala", "a3c", "dqn"])  # the four data flows
def test_the_envs_own_metrics_reach_every_output(user_package, tmp_path, algo):
    """GuessSign reports its accuracy at each episode's end (info["episode_metrics"]); every
    flow carries it to progress.jsonl, TensorBoard and an offline W&B run. One point a right
    guess over 10 steps: the accuracy's mean is the return's mean over 10, report by report."""
    from test_wandb import offline_env, offline_runs, read_tensorboard, read_wandb_log, wandb_history

    out = tmp_path / "run"
    result = run_distrl(
        "train", "--algo", algo, "--env", "usergames.envs:GuessSign-v0", "--num-workers", "2",
        "--seed", "1", "--out", str(out), "--set", "stop.seconds=3", "output.tensorboard=true",
        "output.report_every_s=0.25", "output.wandb.project=distrl-test", "output.wandb.mode=offline",
        env={**offline_env(tmp_path), "PYTHONPATH": user_package["PYTHONPATH"]}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # The last report at each step count: TensorBoard and W&B keep one value a step.
    reported = list({r["env_steps"]: r for r in read_progress(out) if r.get("episode_metrics")}.values())
    assert len(reported) >= 2, read_progress(out)[-1]
    for record in reported:
        assert set(record["episode_metrics"]) == {"accuracy", "plus_share"}
        assert record["episode_metrics"]["accuracy"] * 10 == pytest.approx(record["episode_return_mean"])
    tb = read_tensorboard(out / "tb")
    assert [tb[r["env_steps"]]["episode/accuracy"] for r in reported] == pytest.approx(
        [r["episode_metrics"]["accuracy"] for r in reported]
    )
    (folder,) = offline_runs(out)
    rows = dict(wandb_history(read_wandb_log(next(folder.glob("run-*.wandb")))))
    assert [rows[r["env_steps"]]["episode/accuracy"] for r in reported] == pytest.approx(
        [r["episode_metrics"]["accuracy"] for r in reported]
    )
