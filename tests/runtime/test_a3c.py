"""A3C on real Ray: gradients from two workers both reach the learner and change the
weights, with no barrier between the workers."""

import numpy as np
import ray

from distrl.config import resolve
from distrl.runtime.flows.gradients import ApplyGradients, PushGradients
from distrl.runtime.learner import Learner
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.rollout_worker import Request, RolloutWorker


def test_a_slow_worker_does_not_hold_the_fast_one_back(ray_local):
    fast_config = resolve({"algo": "a3c", "runtime": {"envs_per_worker": 1, "fragment_length": 5}})
    # Same model, but a fragment 2000 times longer: one of its steps takes about a second.
    slow_config = resolve({"algo": "a3c", "runtime": {"envs_per_worker": 4, "fragment_length": 2500}})
    server = ParameterServer.remote()
    learner = Learner.remote(fast_config)
    fast = RolloutWorker.remote(0, fast_config, server, 1, PushGradients(learner))
    slow = RolloutWorker.remote(1, slow_config, server, 2, PushGradients(learner))
    info, _ = ray.get([fast.setup.remote(), slow.setup.remote()])
    ray.get(learner.setup.remote(info["observation_space"], info["action_space"], server, ApplyGradients()))
    ray.get([worker.pull_weights.remote() for worker in (slow, fast)])  # version 0, as the trainer's first request
    initial = ray.get(learner.get_state.remote())["model"]
    request = Request(env_steps=0, num_workers=2)

    slow_step = slow.work.remote(request)
    fast_versions = []
    while not ray.wait([slow_step], timeout=0)[0] and len(fast_versions) < 500:
        fast_versions.append(ray.get(fast.work.remote(request))["update"].version)
    slow_summary = ray.get(slow_step)

    # Every gradient was applied once, each making a new version: the fast worker's one after
    # another while the slow one was working, and the slow one's in between.
    slow_version = slow_summary["update"].version
    assert sorted(fast_versions + [slow_version]) == list(range(1, len(fast_versions) + 2))
    assert ray.get(learner.get_state.remote())["version"] == len(fast_versions) + 1
    # The slow worker computed on version 0; the fast one's updates landed before its own.
    assert slow_summary["update"].policy_lag == slow_version - 1 >= 5, (slow_version, fast_versions)
    final = ray.get(learner.get_state.remote())["model"]
    assert any(not np.array_equal(final[name], initial[name]) for name in initial)
    # A worker leaves each push holding the newest weights: the learner's, with its gradient.
    final_version, weights = ray.get(slow.get_weights.remote())
    assert final_version == slow_version
    ray.get(slow.work.remote(request))
    state = ray.get(learner.get_state.remote())
    version, weights = ray.get(slow.get_weights.remote())
    assert version == state["version"] == len(fast_versions) + 2
    for name, tensor in state["model"].items():
        np.testing.assert_array_equal(weights[name], tensor.numpy())
