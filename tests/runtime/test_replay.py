"""Replay shards on real Ray: frames stored once and stacks rebuilt exactly, n-step targets,
and prioritized sampling that follows the priorities."""

import numpy as np
import pytest
import ray
import torch

from distrl.algos.returns import nstep_targets
from distrl.config import resolve
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.replay import ReplayBuffer, SumTree
from distrl.runtime.rollout_worker import Request, RolloutWorker


def test_sum_tree_samples_in_proportion():
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([1.0, 0.0, 3.0, 6.0, 0.0]))
    assert tree.total == 10.0
    counts = np.bincount(tree.sample(100_000, np.random.default_rng(0)), minlength=5) / 100_000
    np.testing.assert_allclose(counts, [0.1, 0.0, 0.3, 0.6, 0.0], atol=0.01)
    tree.update(np.array([3]), np.array([0.0]))
    assert tree.total == 4.0 and set(tree.sample(1000, np.random.default_rng(1))) == {0, 2}


@pytest.mark.parametrize(
    "env, vectorize, side",
    [
        ({"id": "distrl/Catch-v0", "options": {"screen_size": 16}}, "auto", 16),
        # Breakout loses lives (terminal for learning, the game plays on) and starts new games:
        # ale-py's own vector env and the Python wrappers must both begin an episode's stack
        # as replay rebuilds it, from the first frame repeated (issue 31).
        ({"id": "ALE/Breakout-v5", "options": {"screen_size": 36}}, "native", 36),
        ({"id": "ALE/Breakout-v5", "options": {"screen_size": 36}}, "loop", 36),
    ],
    ids=["catch", "breakout-native", "breakout-loop"],
)
def test_pixel_replay_stores_each_frame_once_and_rebuilds_stacks(ray_local, env, vectorize, side):
    """Real fragments (4-frame stacks, short episodes) from a real worker: every sampled
    observation, next observation and n-step return must equal what the worker saw, while
    the buffer holds one frame per step."""
    T, K, n, gamma = 25, 2, 3, 0.9
    config = resolve(
        {
            "algo": "dqn",
            "env": {**env, "vectorize": vectorize},
            "runtime": {"envs_per_worker": K, "fragment_length": T},
            "dqn": {"n_step": n, "gamma": gamma, "prioritized": False},
        }
    )
    worker = RolloutWorker.remote(0, config, ParameterServer.remote(), seed=3)
    ray.get(worker.setup.remote())
    replay = ReplayBuffer.remote(10_000, K, 4, n, False, 0.6, 0)
    fragments = []
    for _ in range(3 if side == 16 else 8):
        fragment = ray.get(worker.sample.remote(Request())[0])
        fragments.append(fragment)
        ray.get(replay.add.remote([0, 1], fragment))
    shapes = ray.get(replay.describe.remote())["shapes"]
    assert shapes["frames"][2:] == (1, side, side)  # one frame per step, not a stack of 4
    obs = np.concatenate([f["obs"] for f in fragments])  # [steps, K, 4, side, side]
    rewards = np.concatenate([f["rewards"] for f in fragments])
    done = np.concatenate([f["terminated"] | f["truncated"] for f in fragments])
    starts = np.concatenate([f["episode_start"] for f in fragments])
    assert starts[1:].sum() >= 2, "too few episodes began to check their first stacks"
    for t, k in zip(*np.nonzero(starts)):
        assert (obs[t, k] == obs[t, k, -1:]).all(), "an episode's first stack is not its first frame repeated"
    sampled = ray.get(replay.sample.remote(512, 1.0))
    described = ray.get(replay.describe.remote())
    row_to_column = {row: stream for stream, row in described["streams"].items()}
    for j, (leaf, i) in enumerate(zip(sampled["leaves"], sampled["absolute"])):
        k = row_to_column[leaf // described["slots_per_stream"]]
        np.testing.assert_array_equal(sampled["obs"][j], obs[i, k])
        m, expected = 0, 0.0
        while m < n:
            expected += gamma**m * rewards[i + m, k]
            m += 1
            if done[i + m - 1, k]:
                break
        # The window of the n steps that follow, and the target DQN builds from it.
        np.testing.assert_array_equal(sampled["rewards"][j], rewards[i : i + n, k])
        returns, discount, _ = nstep_targets(
            *(torch.tensor(sampled[key][j : j + 1]) for key in ("rewards", "terminated", "truncated")), gamma
        )
        assert returns.item() == pytest.approx(expected, abs=1e-6)
        np.testing.assert_array_equal(sampled["next_obs"][j], obs[i + m, k])
        assert discount.item() == pytest.approx(0.0 if done[i + m - 1, k] else gamma**m)
    assert len(set(sampled["absolute"])) > 20
    # The newest n steps of each stream cannot be sampled yet: their n-step window is open.
    assert max(sampled["absolute"]) <= len(obs) - 1 - n


def vector_fragment(T, priorities, version=0):
    return {
        "obs": np.arange(T, dtype=np.float32).reshape(T, 1, 1),
        "actions": np.zeros((T, 1), np.int64),
        "rewards": np.ones((T, 1), np.float32),
        "terminated": np.zeros((T, 1), bool),
        "truncated": np.zeros((T, 1), bool),
        "episode_start": np.zeros((T, 1), bool),
        "timeout_value": np.zeros((T, 1), np.float32),
        "priorities": np.asarray(priorities, np.float32).reshape(T, 1),
        "policy_version": np.int64(version),
    }


def test_prioritized_sampling_follows_priorities_and_weights(ray_local):
    """Sampling frequencies match p^alpha / sum p^alpha (a chi-square test at the 0.1%
    level), and importance weights are (N P(i))^-beta / max_j w_j."""
    T, n, alpha, beta = 21, 1, 0.6, 0.5
    priorities = np.linspace(0.1, 3.0, T)
    replay = ReplayBuffer.remote(1000, 1, 1, n, True, alpha, 1)
    assert ray.get(replay.add.remote([0], vector_fragment(T, priorities))) == T - n  # the last one waits
    p = priorities[: T - n] ** alpha
    expected = p / p.sum()
    draws = 200
    counts = np.zeros(T - n)
    for _ in range(draws):
        batch = ray.get(replay.sample.remote(256, beta))
        counts += np.bincount(batch["absolute"], minlength=T - n)
        probabilities = expected[batch["absolute"]]
        weights = ((T - n) * probabilities) ** -beta
        np.testing.assert_allclose(batch["weights"], weights / weights.max(), rtol=1e-5)
    total = counts.sum()
    chi_square = ((counts - total * expected) ** 2 / (total * expected)).sum()
    # 19 degrees of freedom: the 99.9% quantile of chi-square is 43.8.
    assert chi_square < 43.8, (chi_square, counts / total, expected)

    # New priorities from the learner change the sampling: transitions 0-9 set to ~0 all but vanish.
    batch = ray.get(replay.sample.remote(4000, beta))
    low = batch["absolute"] < 10
    ray.get(replay.update_priorities.remote(batch["leaves"][low], batch["absolute"][low], np.full(low.sum(), 1e-9)))
    later = ray.get(replay.sample.remote(4000, beta))
    assert low.mean() > 0.2 and (later["absolute"] < 10).mean() < 0.001


def test_old_transitions_leave_the_ring(ray_local):
    replay = ReplayBuffer.remote(10, 1, 1, 1, False, 0.6, 2)
    for start in range(0, 30, 5):
        fragment = vector_fragment(5, np.ones(5))
        fragment["obs"] = fragment["obs"] + start
        ray.get(replay.add.remote([0], fragment))
    batch = ray.get(replay.sample.remote(500, 1.0))
    assert set(batch["absolute"]) == set(range(20, 29))  # the newest 10 slots minus the open one
    np.testing.assert_array_equal(batch["obs"][:, 0], batch["absolute"])


def test_importance_weights_over_several_shards():
    """Two shards of 3 and 1 transitions: P(i) = p_i / (sum of both totals), N = 4."""
    from distrl.runtime.replay import global_weights

    parts = [
        {"priority": np.array([1.0, 2.0]), "total": 6.0, "size": 3},
        {"priority": np.array([4.0]), "total": 4.0, "size": 1},
    ]
    weights = global_weights(parts, beta=0.5)
    raw = (4 * np.array([1.0, 2.0, 4.0]) / 10.0) ** -0.5
    np.testing.assert_allclose(weights, raw / raw.max(), rtol=1e-6)


def test_nan_priorities_leave_the_tree_as_it_was():
    """A skipped (non-finite) DQN step reports NaN TD errors; they must not reach the sum tree.
    The buffer's class itself, in this process (the actor runs the same code)."""
    T = 8
    buffer = ReplayBuffer.__ray_actor_class__(64, 1, 1, 1, True, 0.6, 0)
    steps = {
        "obs": np.arange(T, dtype=np.float32).reshape(T, 1, 1),
        "episode_start": np.zeros((T, 1), bool),
        "actions": np.zeros((T, 1), np.int64),
        "rewards": np.ones((T, 1), np.float32),
        "terminated": np.zeros((T, 1), bool),
        "truncated": np.zeros((T, 1), bool),
        "timeout_value": np.zeros((T, 1), np.float32),
        "priorities": np.ones((T, 1), np.float32),
        "policy_version": np.int64(0),
    }
    buffer.add([0], steps)
    sample = buffer.sample(4, 1.0)
    total = buffer.tree.total
    buffer.update_priorities(sample["leaves"], sample["absolute"], np.full(4, np.nan))
    assert buffer.tree.total == total and np.isfinite(buffer.tree.total)
    buffer.update_priorities(sample["leaves"], sample["absolute"], np.full(4, 2.0))
    assert buffer.tree.total != total  # finite priorities still land
