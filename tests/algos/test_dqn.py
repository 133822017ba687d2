"""DQN's update on a batch built by hand, with a Q-table so that every number is known."""

import numpy as np
import pytest
import torch

from distrl.algos.dqn import DQN, DQNConfig, epsilons
from distrl.algos.interface import Behaviour, Progress
from distrl.config import resolve
from distrl.models import QTable


def one_hot(states, n=3):
    return torch.eye(n)[torch.as_tensor(states)]


def one_terminal_transition():
    """State 0, action 0, reward 1, then the episode ends."""
    return {
        "obs": one_hot([0]),
        "actions": torch.tensor([0]),
        "rewards": torch.tensor([[1.0]]),
        "terminated": torch.tensor([[True]]),
        "truncated": torch.tensor([[False]]),
        "next_obs": one_hot([1]),
        "cut": torch.tensor([False]),
        "cut_value": torch.tensor([0.0]),
        "weights": torch.tensor([1.0]),
    }


def test_double_dqn_targets_huber_loss_and_priorities():
    model = QTable(3, 2)
    model.table.data = torch.tensor([[1.0, 2.0], [0.5, 3.0], [4.0, -1.0]])
    config = DQNConfig(lr=1e-12, gamma=0.9, huber_delta=1.0, priority_eps=0.0, target_update_interval=1000)
    dqn = DQN(config, model, None)
    dqn.target.table.data = torch.tensor([[0.0, 10.0], [7.0, 5.0], [2.0, 9.0]])
    batch = {
        "obs": one_hot([0, 1, 2]),
        "actions": torch.tensor([1, 0, 0]),
        # 3-step windows: row 0 runs on, row 1 ends in a terminal state at once, row 2 is
        # cut by a time limit at its third step.
        "rewards": torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [2.0, 0.0, 0.0]]),
        "terminated": torch.tensor([[False, False, False], [True, False, False], [False, False, False]]),
        "truncated": torch.tensor([[False, False, False], [False, False, False], [False, False, True]]),
        "next_obs": one_hot([1, 2, 0]),
        "cut": torch.tensor([False, False, True]),
        "cut_value": torch.tensor([0.0, 0.0, 4.0]),
        "weights": torch.tensor([1.0, 0.5, 0.25]),
    }
    update = dqn.learn(batch, Progress(env_steps=0))
    stats, priorities = update.stats, update.priorities
    # Row 0: Q(0, 1) = 2; the online net picks argmax Q(1, .) = action 1, the target net
    #        values it at 5: target = 1 + 0.9^3 * 5 = 4.645, TD error 2.645.
    # Row 1: Q(1, 0) = 0.5; terminal (discount 0): target 0.5, TD error 0.
    # Row 2: Q(2, 0) = 4; the window was cut by a time limit: bootstrap from the recorded 4,
    #        not from the target net: target = 2 + 0.729 * 4 = 4.916, TD error 0.916.
    np.testing.assert_allclose(priorities, [2.645, 0.0, 0.916], rtol=1e-5)
    huber = lambda x: 0.5 * x * x if abs(x) <= 1 else abs(x) - 0.5  # noqa: E731
    expected_loss = (1.0 * huber(2.645) + 0.5 * huber(0.0) + 0.25 * huber(0.916)) / 3
    assert stats["loss"] == pytest.approx(expected_loss, rel=1e-5)

    dqn.config.double = False  # plain DQN: the target net picks and values, max Q_target(1, .) = 7
    priorities = dqn.learn(batch, Progress(env_steps=0)).priorities
    assert priorities[0] == pytest.approx(1 + 0.729 * 7 - 2)


def test_target_network_copies_every_interval_or_follows_by_polyak():
    model = QTable(3, 2)
    dqn = DQN(DQNConfig(lr=0.1, target_update_interval=2), model, None)
    batch = one_terminal_transition()
    dqn.learn(batch, Progress(0))
    assert torch.all(dqn.target.table == 0) and model.table[0, 0] != 0
    dqn.learn(batch, Progress(0))
    assert torch.equal(dqn.target.table, model.table)
    polyak = DQN(DQNConfig(lr=0.1, tau=0.5), QTable(3, 2), None)
    polyak.learn(batch, Progress(0))
    assert polyak.target.table[0, 0] == pytest.approx(0.5 * polyak.model.table[0, 0].item())


def test_epsilon_ladder_over_all_env_copies():
    config = DQNConfig(exploration="ladder", epsilon_base=0.4, epsilon_alpha=7.0, epsilon_anneal_env_steps=0)
    ladder = np.concatenate(
        [epsilons(config, Behaviour(rank=w, num_workers=2, envs_per_worker=4, env_steps=0)) for w in range(2)]
    )
    expected = 0.4 ** (1 + 7 * np.arange(8) / 7)
    np.testing.assert_allclose(ladder, expected, rtol=1e-6)
    annealing = DQNConfig(exploration="ladder", epsilon_base=0.4, epsilon_alpha=7.0, epsilon_anneal_env_steps=1000)
    alone = lambda steps: Behaviour(rank=0, num_workers=1, envs_per_worker=1, env_steps=steps)  # noqa: E731
    np.testing.assert_allclose(epsilons(annealing, alone(0)), [1.0])
    np.testing.assert_allclose(epsilons(annealing, alone(500)), [0.7], rtol=1e-6)
    np.testing.assert_allclose(epsilons(annealing, alone(5000)), [0.4], rtol=1e-6)


def test_linear_epsilon_is_one_rate_for_every_copy_falling_to_its_final_value():
    config = DQNConfig(exploration="linear", epsilon_final=0.01, epsilon_anneal_env_steps=1000)
    at = lambda steps, rank=0: Behaviour(rank=rank, num_workers=2, envs_per_worker=4, env_steps=steps)  # noqa: E731
    np.testing.assert_allclose(epsilons(config, at(0)), [1.0] * 4)
    np.testing.assert_allclose(epsilons(config, at(500, rank=1)), [0.505] * 4, rtol=1e-6)
    np.testing.assert_allclose(epsilons(config, at(1000)), [0.01] * 4, rtol=1e-6)
    np.testing.assert_allclose(epsilons(config, at(10**7)), [0.01] * 4, rtol=1e-6)
    no_anneal = DQNConfig(exploration="linear", epsilon_final=0.05, epsilon_anneal_env_steps=0)
    np.testing.assert_allclose(epsilons(no_anneal, at(0)), [0.05] * 4, rtol=1e-6)


@pytest.mark.parametrize(
    "runtime, expected",
    [
        ({"num_workers": 1, "envs_per_worker": 4}, "linear"),
        ({"num_workers": 7, "envs_per_worker": 4}, "linear"),
        ({"num_workers": 8, "envs_per_worker": 4}, "ladder"),
        ({"num_workers": "auto"}, "ladder"),
    ],
)
def test_exploration_auto_is_settled_by_the_number_of_env_copies(runtime, expected):
    config = resolve({"algo": "dqn", "env": {"id": "ALE/Breakout-v5"}, "runtime": runtime})
    assert config.algo_config.exploration == expected
    assert f"exploration: {expected}" in config.to_yaml()  # the resolved config says which
    # An explicit choice stays, and CartPole's tuned preset keeps its ladder.
    chosen = resolve({"algo": "dqn", "env": {"id": "ALE/Breakout-v5"}, "dqn": {"exploration": "ladder"}})
    assert chosen.algo_config.exploration == "ladder"
    assert resolve({"algo": "dqn", "runtime": runtime}).algo_config.exploration == "ladder"


@pytest.mark.parametrize("schedule, expected_lr", [("constant", 0.1), ("linear", 0.025)])
def test_learning_rate_schedule_sets_the_step_taken(schedule, expected_lr):
    # Adam's first step moves each parameter by lr * g / (|g| + eps): about lr, whatever the
    # gradient's size, so the moved entry shows the lr that was used. Three quarters through
    # a 1000-step horizon, a linear schedule has lr * 0.25 left.
    dqn = DQN(DQNConfig(lr=0.1, lr_schedule=schedule, adam_eps=1e-8), QTable(3, 2), budget_env_steps=1000)
    batch = one_terminal_transition()
    stats = dqn.learn(batch, Progress(env_steps=750)).stats
    assert stats["learning_rate"] == pytest.approx(expected_lr)
    assert dqn.model.table[0, 0].item() == pytest.approx(expected_lr, rel=1e-4)
