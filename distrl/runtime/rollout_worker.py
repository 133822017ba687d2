"""RolloutWorker: K environment copies and a CPU copy of the policy, cutting fixed-length,
time-major fragments (``runtime/fragment.py``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import numpy as np
import ray
import torch
from ray.exceptions import ObjectLostError

from distrl.algos import ALGORITHMS
from distrl.algos.interface import Behaviour
from distrl.envs import custom, frames_per_step
from distrl.envs.vector import VectorEnv, make_vector_env
from distrl.models import build_model
from distrl.runtime import backend
from distrl.runtime import fragment as schema
from distrl.runtime.phases import CallClock
from distrl.runtime.weights import get_weights, set_weights


@dataclass(frozen=True)
class Request:
    """What the driver tells a worker with each request about the run. ``weights``: the
    newest published ``(version, ref)`` the driver knows of, so that the worker needs no
    round trip of its own to find out (None: keep the weights it has)."""

    env_steps: int = 0
    num_workers: int = 1
    rank: int = 0  # this worker's position among the current workers
    weights: Optional[tuple[int, Any]] = None


class WorkerTask(Protocol):
    """A data flow's worker side: what a worker does with the fragments it samples when they
    do not go back to the driver (``runtime/flows/``). It travels to the worker when the worker
    is created; ``run`` returns the small summary the driver counts."""

    def run(self, worker: "RolloutWorker", request: Request) -> dict[str, Any]: ...


@ray.remote
class RolloutWorker:
    """Steps its ``envs_per_worker`` copies as one batch (``envs/vector.py``: one forward pass
    and one batched env step for all K) and cuts fragments. Weights: version 0 from the
    ParameterServer at set-up, then whatever newer version a request brings. Image
    observations stay uint8.

    ``sample`` returns the fragment to the driver as its own object (owned by the driver, so
    it survives this worker dying); ``work`` hands it to the flow's ``WorkerTask`` instead.
    """

    def __init__(
        self, worker_id: int, config: Any, parameter_server: Any, seed: int, task: Optional[WorkerTask] = None
    ):
        # Workers share the machine's cores; one torch thread each keeps them from fighting.
        torch.set_num_threads(1)
        # Action sampling draws from torch's generator: seeded, a worker's choices repeat.
        torch.manual_seed(seed)
        self.worker_id = worker_id
        self.config = config
        self.spec = ALGORITHMS[config.algo]
        self.parameter_server = parameter_server
        self.seed = seed
        self.task = task
        self.envs: Optional[VectorEnv] = None
        self.clock = CallClock()  # where this worker's time goes, call by call

    def setup(self) -> dict[str, Any]:
        """Build the envs and the policy and take the published weights. Kept out of
        ``__init__`` so that an error (an unknown env, a missing ROM) reaches the driver as
        the original exception."""
        cfg = self.config
        custom.prepare(cfg.env, custom.worker_process(self.worker_id))
        self.envs = make_vector_env(
            cfg.env.id,
            cfg.runtime.envs_per_worker,
            self.seed,
            cfg.env.options,
            vectorize=cfg.env.vectorize,
            num_threads=max(1, int(cfg.runtime.num_cpus_per_worker)),
        )
        self.observation_space = self.envs.observation_space
        self.action_space = self.envs.action_space
        self.model = build_model(cfg.model, self.observation_space, self.action_space, self.spec.model_head)
        self.model.eval()
        # A Gaussian policy's sample goes to the envs clipped or squashed into the bounds; the
        # fragment keeps the sample itself (models/heads.py).
        self.env_actions = getattr(self.model, "env_actions", lambda actions: actions)
        self.version = -1
        self.pull_weights()
        self.frames_per_step = frames_per_step(cfg.env.id, cfg.env.options)
        self.obs = self.envs.reset()
        self.episode_start = np.ones(self.envs.num_envs, dtype=bool)
        # A recurrent policy's state per env copy [K, S, H]; the policy zeroes a copy's state
        # at an episode's first step, and each fragment records it as it was at its start.
        self.recurrent_state: Any = getattr(self.model, "initial_state", lambda k: None)(self.envs.num_envs)
        return {
            "pid": os.getpid(),
            "node_id": backend.node_id(),
            "observation_space": self.observation_space,
            "action_space": self.action_space,
        }

    def pull_weights(self) -> bool:
        """Ask the ParameterServer for a newer version than ours (at set-up, and for callers
        outside the driver's loop); True if there was one."""
        latest = backend.get(self.parameter_server.latest.remote(self.version))
        if latest is None:
            return False
        version, (weights_ref,) = latest
        return self.take_weights((version, weights_ref))

    def take_weights(self, weights: Optional[tuple[int, Any]]) -> bool:
        """Load ``(version, ref)`` if it is newer than what this worker holds."""
        if weights is None or weights[0] <= self.version:
            return False
        version, weights_ref = weights
        try:
            values = backend.get(weights_ref)
        except ObjectLostError:
            # Their owner, the learner, died after publishing them: sample on with the weights
            # this worker has; a later request brings the restored learner's.
            return False
        set_weights(self.model, values)
        self.version = version
        return True

    def rollout(self, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        """One fragment of ``fragment_length`` steps from every env copy, and its summary:
        the steps, frames and finished episodes the driver counts."""
        assert self.envs is not None, "setup() first"
        clock = time.perf_counter
        began = clock()
        pulled = self.take_weights(request.weights)
        weight_load = clock() - began
        forward = env_step = 0.0
        T, K = self.config.runtime.fragment_length, self.envs.num_envs
        behaviour = {}
        if self.spec.behaviour is not None:
            at = Behaviour(
                rank=request.rank, num_workers=request.num_workers, envs_per_worker=K, env_steps=request.env_steps
            )
            behaviour = self.spec.behaviour(self.config.algo_config, at)
        fragment = {
            name: schema.allocate(name, T, K, self.obs)
            for name in ("obs", "episode_start", "rewards", "terminated", "truncated", "timeout_value")
        }
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        episode_metrics: list[dict[str, float]] = []
        env_restarts = 0
        truncated_obs, truncated_at, truncated_state = [], [], []
        recurrent = self.recurrent_state is not None
        if recurrent:
            fragment["initial_state"] = self.recurrent_state.numpy().copy()

        with torch.inference_mode():
            for t in range(T):
                fragment["obs"][t] = self.obs
                fragment["episode_start"][t] = self.episode_start
                inputs = dict(behaviour)
                if recurrent:
                    inputs.update(state=self.recurrent_state, episode_start=torch.from_numpy(self.episode_start))
                before_act = clock()
                choice = self.model.act(torch.from_numpy(self.obs), **inputs)
                forward += clock() - before_act
                if recurrent:
                    self.recurrent_state = choice.pop("state")
                # What the policy reports about its choice (actions, log-probabilities,
                # values, Q-values) is recorded under the names it gives.
                for key, value in choice.items():
                    if t == 0:
                        fragment[key] = schema.allocate(key, T, K, value.numpy())
                    fragment[key][t] = value.numpy()
                before_step = clock()
                step = self.envs.step(self.env_actions(fragment["actions"][t]))
                env_step += clock() - before_step
                fragment["rewards"][t] = step.rewards
                fragment["terminated"][t] = step.terminated
                fragment["truncated"][t] = step.truncated
                episode_returns += step.episode_returns
                episode_lengths += step.episode_lengths
                episode_metrics += step.episode_metrics
                env_restarts += step.env_restarts
                for k, final_obs in step.final_obs.items():
                    truncated_obs.append(final_obs)
                    truncated_at.append((t, k))
                    if recurrent:  # the state that the final observation would have been seen with
                        truncated_state.append(self.recurrent_state[k])
                self.episode_start = step.terminated | step.truncated
                self.obs = step.obs

            fragment["last_obs"] = self.obs.copy()
            before_values = clock()
            memory = {}
            if recurrent:
                memory = {"state": self.recurrent_state, "episode_start": torch.from_numpy(self.episode_start)}
            fragment["bootstrap_value"] = (
                self.model.value(torch.from_numpy(self.obs), **memory).numpy().astype(np.float32)
            )
            if truncated_obs:
                # A time limit is not a terminal state: its target bootstraps from V(final obs).
                if recurrent:
                    memory = {
                        "state": torch.stack(truncated_state),
                        "episode_start": torch.zeros(len(truncated_obs), dtype=torch.bool),
                    }
                values = self.model.value(torch.from_numpy(np.stack(truncated_obs)), **memory).numpy()
                for (t, k), value in zip(truncated_at, values):
                    fragment["timeout_value"][t, k] = value
            forward += clock() - before_values
        fragment["policy_version"] = np.int64(self.version)
        if self.spec.worker_postprocess is not None:
            fragment.update(self.spec.worker_postprocess(fragment, self.config.algo_config))

        summary = {
            "policy_version": self.version,
            "weights_pulled": pulled,
            "env_steps": T * K,
            "env_frames": T * K * self.frames_per_step,
            "episode_returns": episode_returns,
            "episode_lengths": episode_lengths,
            "episode_metrics": episode_metrics,
            "env_restarts": env_restarts,
            # Seconds of this call by phase (runtime/phases.py); sample() and work() add the rest.
            "phases": {"env_step": env_step, "forward": forward, "weight_load": weight_load},
        }
        return fragment, summary

    @ray.method(num_returns=2)
    def sample(self, request: Optional[Request] = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(fragment, summary)`` as two objects: the driver reads the small summary and hands
        the fragment's ref to the learner untouched."""
        idle = self.clock.start()
        fragment, summary = self.rollout(request or Request())
        summary["phases"] = self.clock.finish(summary["phases"], idle)
        return fragment, summary

    def work(self, request: Request) -> dict[str, Any]:
        """Sample and hand the fragment to this run's flow (``WorkerTask``); returns the summary."""
        assert self.task is not None, "this worker was created without a flow task"
        idle = self.clock.start()
        summary = self.task.run(self, request)  # its phases: the rollout's and the task's own
        summary["phases"] = self.clock.finish(summary["phases"], idle)
        return summary

    def get_weights(self) -> tuple[int, dict[str, np.ndarray]]:
        """The policy version this worker holds and its weights (for inspection and tests)."""
        return self.version, get_weights(self.model)

    def close(self) -> None:
        """Close the env copies: families that run emulators in subprocesses end them here."""
        if self.envs is not None:
            self.envs.close()
            self.envs = None
