"""Tabular Q-learning: the textbook update by hand, and FrozenLake solved through the
command line."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import run_distrl
from distrl.algos.interface import Progress
from distrl.algos.qlearning import QLearning, QLearningConfig
from distrl.models import QTable


def test_textbook_update_in_time_order():
    table = QTable(3, 2)
    learner = QLearning(QLearningConfig(alpha=0.5, gamma=0.9), table, None)
    eye = torch.eye(3)
    # One env column: s0 -a1-> s1 (r 1) -a0-> s2 (r 2, terminal); then s0 -a1-> cut by a
    # time limit with V(final obs) = 4.
    batch = {
        "obs": eye[[0, 1, 0]].unsqueeze(1),
        "last_obs": eye[[2]],
        "actions": torch.tensor([[1], [0], [1]]),
        "rewards": torch.tensor([[1.0], [2.0], [0.0]]),
        "terminated": torch.tensor([[False], [True], [False]]),
        "truncated": torch.tensor([[False], [False], [True]]),
        "timeout_value": torch.tensor([[0.0], [0.0], [4.0]]),
    }
    learner.learn(batch, Progress(env_steps=0))
    q = table.table.detach()
    # Q(0,1) = 0 + 0.5 (1 + 0.9 * max Q(1) - 0) = 0.5; Q(1,0) = 0.5 * 2 = 1 (terminal);
    # then Q(0,1) = 0.5 + 0.5 (0 + 0.9 * 4 - 0.5) = 2.05.
    assert q[1, 0].item() == pytest.approx(1.0)
    assert q[0, 1].item() == pytest.approx(2.05)
    assert q[2].abs().sum() == 0


def exact_success(policy: np.ndarray, horizon: int = 100) -> float:
    """P(reaching the goal within ``horizon`` steps) for a deterministic policy on
    FrozenLake 4x4 slippery, by dynamic programming over its known transition table."""
    env = gym.make("FrozenLake-v1").unwrapped
    value = np.zeros(env.observation_space.n)
    for _ in range(horizon):
        new = np.zeros_like(value)
        for state in range(len(value)):
            for probability, next_state, reward, terminated in env.P[state][int(policy[state])]:
                new[state] += probability * (reward if terminated else value[next_state])
        value = new
    return float(value[0])


@pytest.mark.slow
def test_frozenlake_is_solved_by_the_greedy_policy(tmp_path):
    """Budget: 200,000 env steps (about 10,000 episodes), 2 workers. The greedy policy's
    success rate over 100-step episodes must be >= 0.7 (FrozenLake-v1's reward threshold).
    The rate is computed exactly from the table; 100 greedy episodes through `distrl eval`
    must agree with it within 4 standard errors."""
    out = tmp_path / "run"
    result = run_distrl(
        "train",
        "--algo",
        "qlearning",
        "--env",
        "FrozenLake-v1",
        "--num-workers",
        "2",
        "--stop-env-steps",
        "200000",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (saved,) = sorted((out / "checkpoints").glob("ckpt-*"))[-1:]
    table = torch.load(saved / "state.pt", weights_only=True)["model"]["table"].numpy()
    success = exact_success(table.argmax(1))
    assert success >= 0.7, (success, table.argmax(1).reshape(4, 4))

    evaluated = run_distrl("eval", str(out), "--episodes", "100", "--greedy")
    assert evaluated.returncode == 0, evaluated.stderr
    mean = float(dict(line.split(": ") for line in evaluated.stdout.splitlines())["return mean"])
    assert abs(mean - success) <= 4 * np.sqrt(success * (1 - success) / 100), (mean, success)
