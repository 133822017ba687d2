"""RolloutWorker: K environment copies and a CPU copy of the policy, cutting fixed-length,
time-major fragments."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import ray
import torch

from distrl.envs import frames_per_step, make_env
from distrl.models import build_model
from distrl.runtime.weights import get_weights, set_weights


@ray.remote
class RolloutWorker:
    """Steps its ``envs_per_worker`` copies as one batch (one forward pass for all K), and
    before each fragment pulls the newest weights from the ParameterServer, only when the
    version changed. A fragment is a dict of numpy arrays shaped ``[T, K, ...]``; image
    observations stay uint8. It travels as the task's return value: one object in the store,
    owned by the driver, so it survives this worker dying."""

    def __init__(self, worker_index: int, config: Any, parameter_server: Any, seed: int):
        # Workers share the machine's cores; one torch thread each keeps them from fighting.
        torch.set_num_threads(1)
        self.worker_index = worker_index
        self.config = config
        self.parameter_server = parameter_server
        self.seed = seed
        self.envs: list = []

    def setup(self) -> dict[str, Any]:
        """Build the envs and the policy. Kept out of ``__init__`` so that an error (an
        unknown env, a missing ROM) reaches the driver as the original exception."""
        cfg = self.config
        self.envs = [
            make_env(cfg.env.id, seed=self.seed + k, **cfg.env.options) for k in range(cfg.runtime.envs_per_worker)
        ]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.model = build_model(cfg.model, self.observation_space, self.action_space)
        self.model.eval()
        self.version = -1
        self.frames_per_step = frames_per_step(cfg.env.id, cfg.env.options)
        self.obs = np.stack([env.reset()[0] for env in self.envs]).astype(self.observation_space.dtype)
        return {
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "observation_space": self.observation_space,
            "action_space": self.action_space,
        }

    def pull_weights(self) -> bool:
        """Fetch the newest weights if the ParameterServer has a newer version; True if it did."""
        latest = ray.get(self.parameter_server.latest.remote(self.version))
        if latest is None:
            return False
        version, (weights_ref,) = latest
        set_weights(self.model, ray.get(weights_ref))
        self.version = version
        return True

    @ray.method(num_returns=2)
    def sample(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One fragment of ``fragment_length`` steps from every env copy.

        Returns ``(fragment, summary)``: the driver reads the small summary (episodes that
        ended, step counts) and hands the fragment's ref to the learner untouched.
        """
        start = time.perf_counter()
        pulled = self.pull_weights()
        T, K = self.config.runtime.fragment_length, len(self.envs)
        obs_shape, obs_dtype = self.obs.shape[1:], self.obs.dtype
        fragment = {
            "obs": np.empty((T, K, *obs_shape), dtype=obs_dtype),
            "actions": np.empty((T, K), dtype=np.int64),
            "logp": np.empty((T, K), dtype=np.float32),
            "values": np.empty((T, K), dtype=np.float32),
            "rewards": np.empty((T, K), dtype=np.float32),
            "terminated": np.empty((T, K), dtype=bool),
            "truncated": np.empty((T, K), dtype=bool),
            "timeout_value": np.zeros((T, K), dtype=np.float32),
        }
        episode_returns, episode_lengths = [], []
        truncated_obs, truncated_at = [], []
        env_time = 0.0

        for t in range(T):
            fragment["obs"][t] = self.obs
            with torch.inference_mode():
                behaviour = self.model.act(torch.from_numpy(self.obs))
            actions = behaviour["actions"].numpy()
            fragment["actions"][t] = actions
            fragment["logp"][t] = behaviour["logp"].numpy()
            fragment["values"][t] = behaviour["values"].numpy()
            env_start = time.perf_counter()
            for k, env in enumerate(self.envs):
                obs, reward, terminated, truncated, info = env.step(int(actions[k]))
                fragment["rewards"][t, k] = reward
                fragment["terminated"][t, k] = terminated
                fragment["truncated"][t, k] = truncated
                if "episode_return" in info:
                    episode_returns.append(info["episode_return"])
                    episode_lengths.append(info["episode_length"])
                if terminated or truncated:
                    if truncated and not terminated:
                        truncated_obs.append(obs)
                        truncated_at.append((t, k))
                    obs, _ = env.reset()
                self.obs[k] = obs
            env_time += time.perf_counter() - env_start

        with torch.inference_mode():
            fragment["bootstrap_value"] = self.model.value(torch.from_numpy(self.obs)).numpy()
            if truncated_obs:
                # A time limit is not a terminal state: its target bootstraps from V(final obs).
                values = self.model.value(torch.from_numpy(np.stack(truncated_obs))).numpy()
                for (t, k), value in zip(truncated_at, values):
                    fragment["timeout_value"][t, k] = value
        fragment["policy_version"] = np.int64(self.version)

        summary = {
            "worker_index": self.worker_index,
            "policy_version": self.version,
            "weights_pulled": pulled,
            "env_steps": T * K,
            "env_frames": T * K * self.frames_per_step,
            "episode_returns": episode_returns,
            "episode_lengths": episode_lengths,
            "sample_time_s": time.perf_counter() - start,
            "env_time_s": env_time,
        }
        return fragment, summary

    def get_weights(self) -> tuple[int, dict[str, np.ndarray]]:
        """The policy version this worker holds and its weights (for inspection and tests)."""
        return self.version, get_weights(self.model)

    def close(self) -> None:
        for env in self.envs:
            env.close()
