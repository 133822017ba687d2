"""The evaluation actor: whole episodes with the newest published weights, while training
goes on (``eval.every_env_steps``).

Why a separate actor rather than the training return: the training return is measured with
the behaviour policy (DQN's epsilon, the sampled action of a stochastic policy) and on the
training env (Atari's life loss as terminal, clipped rewards), so it understates what the
policy does when used. Here the policy plays greedily (``eval.greedy``) on the env as
``distrl eval`` plays it (the family's evaluation options: whole games, raw scores).

Why it does not slow the learner: it asks the driver for nothing and the learner for nothing;
it takes the weights from the parameter server as a worker does, it reserves no CPU that a
worker or the learner was counted on (``eval.num_cpus``, 0 by default), and it lowers its own
scheduling priority, so on a machine with no spare core it plays in the gaps the others leave.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import ray
import torch

from distrl.algos import ALGORITHMS
from distrl.envs import custom, family_of, make_env
from distrl.models import build_model
from distrl.policy import Policy
from distrl.runtime import backend
from distrl.runtime.weights import set_weights

# os.nice increment: below the learner and the workers, which run at the default priority.
NICENESS = 10


@ray.remote(num_cpus=0)
class Evaluator:
    def __init__(self, config: Any):
        try:
            os.nice(NICENESS)
        except OSError:  # a platform or container that refuses: play at normal priority
            pass
        torch.set_num_threads(1)
        custom.prepare(config.env)
        self.config = config
        self.env_options = {**config.env.options, **family_of(config.env.id).eval_options}
        env = make_env(config.env.id, seed=config.eval.seed, **self.env_options)
        model = build_model(config.model, env.observation_space, env.action_space, ALGORITHMS[config.algo].model_head)
        self.policy = Policy(model.eval(), env.observation_space, env.action_space, config=config)
        env.close()

    def evaluate(self, env_steps: int, parameter_server: Any) -> dict[str, Any]:
        """Play ``eval.episodes`` episodes with the weights ``parameter_server`` holds now.
        ``env_steps``: the run's step count when the driver asked, reported back with the
        result. Every round starts its env from the same seed, so rounds differ by their
        weights only. (The handle comes with each call, not to the constructor, so that an
        evaluator Ray restarts is rebuilt from plain config.)"""
        from distrl.evaluate import _play

        started = time.monotonic()
        latest = backend.get(parameter_server.latest.remote(-1))
        if latest is None:
            return {"env_steps": env_steps, "version": None}
        version, (weights_ref,) = latest
        set_weights(self.policy.model, backend.get(weights_ref))
        env = make_env(self.config.env.id, seed=self.config.eval.seed, **self.env_options)
        try:
            torch.manual_seed(self.config.eval.seed)
            returns = _play(env, self.policy, self.config.eval.episodes, self.config.eval.greedy)
        finally:
            env.close()
        return {
            "env_steps": env_steps,
            "version": version,
            "return_mean": float(np.mean(returns)),
            "return_std": float(np.std(returns)),
            "episodes": len(returns),
            "seconds": time.monotonic() - started,
        }
