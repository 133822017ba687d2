"""Every policy-gradient algorithm on the vector action spaces (models/heads.py), through the
command line with 2 rollout workers: MultiBinary and MultiDiscrete on examples/mygames'
CopyBits, Box on Pendulum-v1. Budgets are stated per run: at least 1.5 times the steps the
slowest of three seeds needed (docs/algorithms.md, "Action spaces")."""

import os

import pytest

from conftest import USER_PACKAGE, assert_clean_error, distrl_here, read_progress, run_distrl

pytestmark = pytest.mark.slow
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(USER_PACKAGE.parent), os.environ.get("PYTHONPATH")])),
}


def train(out, algo: str, target: float, budget: int, *args: str) -> dict:
    result = run_distrl(
        "train", "--algo", algo, "--num-workers", "2", "--seed", "1", "--out", str(out),
        "--stop-reward", str(target), "--stop-env-steps", str(budget), *args, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_progress(out)[-1]
    assert last["episode_return_mean"] >= target, last
    return last


@pytest.mark.parametrize(
    "algo, action, recurrent",
    [
        # Two of them with a recurrent core, which the task does not need, to run the recurrent
        # paths through the synchronous and the gradient flows (PPO's whole-sequence
        # minibatches: tests/algos/test_ppo.py, without Ray; a recurrent PPO run here costs 40 s).
        ("ppo", "binary", "none"),
        ("a2c", "discrete", "lstm"),
        ("a3c", "binary", "gru"),
        ("impala", "discrete", "none"),
        ("appo", "binary", "none"),
    ],
)
def test_copy_bits_with_multi_binary_and_multi_discrete_actions(tmp_path, algo, action, recurrent):
    # CopyBits-v0 with 4 bits over 10 steps: random play scores 5, copying every bit 10.
    train(
        tmp_path / algo, algo, 9.0, 200_000,
        "--set", "env.id=CopyBits-v0", "env.imports=mygames.envs", f"env.options.action={action}",
        f"model.recurrent={recurrent}",
    )  # fmt: skip


def test_ppo_swings_up_pendulum(tmp_path):
    # Pendulum-v1: a random policy scores about -1,200; the target is -200.
    train(tmp_path / "ppo", "ppo", -200, 350_000, "--config", "configs/ppo_pendulum.yaml")


@pytest.mark.parametrize("algo, name", [("dqn", "DQN"), ("qlearning", "Tabular Q-learning")])
def test_value_methods_refuse_a_box_action_before_ray_starts(tmp_path, algo, name):
    result = distrl_here("train", "--algo", algo, "--env", "Pendulum-v1", "--out", str(tmp_path / algo))
    assert_clean_error(result)
    assert f"{name} takes Discrete actions only" in result.stderr and "ppo, a2c" in result.stderr
    assert "Ray" not in result.stdout and not (tmp_path / algo / "progress.jsonl").exists()
