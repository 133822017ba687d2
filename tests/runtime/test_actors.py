"""The runtime actors on a real local Ray: separate processes, fragments of the documented
shape, and weights that reach the workers when, and only when, a request brings a newer
version than theirs."""

import os
import time

import numpy as np
import pytest
import ray

from distrl.algos.interface import Progress
from distrl.config import resolve
from distrl.runtime.flows.synchronous import LearnFromFragments
from distrl.runtime.fragment import collate
from distrl.runtime.learner import Learner
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.rollout_worker import Request, RolloutWorker


def start(config, num_workers):
    ps = ParameterServer.remote()
    workers = [RolloutWorker.remote(i, config, ps, seed=100 * i) for i in range(num_workers)]
    infos = ray.get([w.setup.remote() for w in workers])
    return ps, workers, infos


def test_workers_are_distinct_processes_and_receive_new_weight_versions(ray_local):
    config = resolve({"runtime": {"envs_per_worker": 3, "fragment_length": 16}})
    ps, workers, infos = start(config, 2)
    pids = {info["pid"] for info in infos}
    assert len(pids) == 2 and os.getpid() not in pids

    learner = Learner.remote(config)
    ray.get(learner.setup.remote(infos[0]["observation_space"], infos[0]["action_space"], ps, LearnFromFragments()))
    version0 = ray.get(learner.get_state.remote())
    assert version0["version"] == 0

    newest = ray.get(learner.newest_weights.remote())
    refs = [w.sample.remote(Request(weights=newest)) for w in workers]
    summaries = ray.get([summary for _, summary in refs])
    assert [s["policy_version"] for s in summaries] == [0, 0]
    assert all(s["weights_pulled"] for s in summaries)
    for worker in workers:
        version, weights = ray.get(worker.get_weights.remote())
        assert version == 0
        for name, tensor in version0["model"].items():
            np.testing.assert_array_equal(weights[name], tensor.numpy())

    report = ray.get(learner.update.remote([fragment for fragment, _ in refs], Progress(0)))
    assert report.version == 1 and report.policy_lag == 0.0 and report.updates == 1
    assert report.published is not None and report.published[0] == 1
    version1 = ray.get(learner.get_state.remote())
    changed = [n for n in version1["model"] if not np.array_equal(version1["model"][n], version0["model"][n])]
    assert changed, "the update changed no weight"

    # A request that brings no weights, or older ones, leaves the worker's weights alone.
    summaries = ray.get([w.sample.remote(Request(weights=newest))[1] for w in workers])
    assert [s["policy_version"] for s in summaries] == [0, 0] and not any(s["weights_pulled"] for s in summaries)

    summaries = ray.get([w.sample.remote(Request(weights=report.published))[1] for w in workers])
    assert [s["policy_version"] for s in summaries] == [1, 1]
    for worker in workers:
        version, weights = ray.get(worker.get_weights.remote())
        assert version == 1
        for name, tensor in version1["model"].items():
            np.testing.assert_array_equal(weights[name], tensor.numpy())

    summaries = ray.get([w.sample.remote()[1] for w in workers])
    assert not any(s["weights_pulled"] for s in summaries)
    # The parameter server keeps the newest version for whoever asks outside the requests
    # (it is told without waiting, so give it a moment).
    deadline = time.monotonic() + 10
    while ray.get(ps.get_version.remote()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray.get(ps.get_version.remote()) == 1


def test_fragments_are_time_major_and_count_steps(ray_local):
    T, K = 20, 3
    config = resolve({"runtime": {"envs_per_worker": K, "fragment_length": T}})
    ps, (worker,), infos = start(config, 1)
    learner = Learner.remote(config)
    ray.get(learner.setup.remote(infos[0]["observation_space"], infos[0]["action_space"], ps, LearnFromFragments()))
    fragment_ref, summary_ref = worker.sample.remote()
    fragment, summary = ray.get(fragment_ref), ray.get(summary_ref)
    assert fragment["obs"].shape == (T, K, 4) and fragment["obs"].dtype == np.float32
    for key in ("actions", "logp", "values", "rewards", "terminated", "truncated", "timeout_value"):
        assert fragment[key].shape == (T, K), key
    assert fragment["bootstrap_value"].shape == (K,)
    assert summary["env_steps"] == T * K == summary["env_frames"]
    # CartPole pays 1 per step, and each finished episode's length equals its return.
    np.testing.assert_array_equal(fragment["rewards"], 1.0)
    assert summary["episode_returns"], "no episode ended in 60 random CartPole steps"
    assert summary["episode_returns"] == [float(n) for n in summary["episode_lengths"]]
    assert len(summary["episode_returns"]) == fragment["terminated"].sum() + fragment["truncated"].sum()
    # Behaviour log-probabilities are those of the recorded actions under a 2-action policy.
    assert np.all(fragment["logp"] <= 0) and np.all(fragment["logp"] > np.log(1e-6))

    batch = collate([fragment, fragment], device="cpu")
    assert tuple(batch["obs"].shape) == (T, 2 * K, 4)
    assert tuple(batch["bootstrap_value"].shape) == (2 * K,)


def test_image_fragments_stay_uint8(ray_local):
    pytest.importorskip("ale_py")
    config = resolve({"env": {"id": "ALE/Pong-v5"}, "runtime": {"envs_per_worker": 2, "fragment_length": 8}})
    ps, (worker,), infos = start(config, 1)
    learner = Learner.remote(config)
    ray.get(learner.setup.remote(infos[0]["observation_space"], infos[0]["action_space"], ps, LearnFromFragments()))
    fragment_ref, summary_ref = worker.sample.remote()
    fragment = ray.get(fragment_ref)
    assert fragment["obs"].shape == (8, 2, 4, 84, 84) and fragment["obs"].dtype == np.uint8
    assert ray.get(summary_ref)["env_frames"] == 8 * 2 * 4


def test_time_limit_steps_carry_the_value_of_their_final_observation(ray_local):
    """Episodes cut by a time limit bootstrap from V(final obs): the worker records that value
    exactly at truncated, non-terminal steps, and nowhere else."""
    T, K = 24, 2
    config = resolve(
        {"env": {"options": {"max_episode_steps": 5}}, "runtime": {"envs_per_worker": K, "fragment_length": T}}
    )
    ps, (worker,), infos = start(config, 1)
    learner = Learner.remote(config)
    ray.get(learner.setup.remote(infos[0]["observation_space"], infos[0]["action_space"], ps, LearnFromFragments()))
    fragment = ray.get(worker.sample.remote()[0])
    cut = fragment["truncated"] & ~fragment["terminated"]
    assert cut.sum() >= 2
    assert np.all(fragment["timeout_value"][cut] != 0) and np.all(fragment["timeout_value"][~cut] == 0)
    # After a cut the next observation starts a new episode: CartPole starts near 0.
    t, k = np.argwhere(cut[:-1])[0]
    assert np.all(np.abs(fragment["obs"][t + 1, k]) <= 0.05)
