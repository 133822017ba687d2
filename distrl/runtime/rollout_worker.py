"""RolloutWorker: K environment copies and a CPU copy of the policy, cutting fixed-length,
time-major fragments."""

from __future__ import annotations

import os
import time
from typing import Any, Optional

import numpy as np
import ray
import torch

from distrl.algos import ALGORITHMS
from distrl.envs import frame_stack_of, frames_per_step, make_env
from distrl.models import build_model
from distrl.runtime.replay import newest_frames
from distrl.runtime.weights import get_weights, set_weights

# What a replay shard stores of a fragment, besides one frame per step.
REPLAY_KEYS = ("actions", "rewards", "terminated", "truncated", "episode_start", "timeout_value", "priorities")

# What the driver tells a worker about the run with each request:
# {"env_steps": ..., "num_workers": ..., "rank": this worker's position among them}.
Progress = dict[str, int]


@ray.remote
class RolloutWorker:
    """Steps its ``envs_per_worker`` copies as one batch (one forward pass for all K), and
    before each fragment pulls the newest weights from the ParameterServer, only when the
    version changed. A fragment is a dict of numpy arrays shaped ``[T, K, ...]``; image
    observations stay uint8.

    Where the fragment goes depends on the algorithm: back to the driver as the task's
    return value (one object in the store, owned by the driver, so it survives this worker
    dying), into replay shards (DQN), or into a gradient pushed to the ParameterServer (A3C).
    """

    def __init__(
        self,
        worker_index: int,
        config: Any,
        parameter_server: Any,
        seed: int,
        replay_shards: Optional[list] = None,
    ):
        # Workers share the machine's cores; one torch thread each keeps them from fighting.
        torch.set_num_threads(1)
        self.worker_index = worker_index
        self.frame_stack = frame_stack_of(config.env.id, config.env.options)
        self.config = config
        self.spec = ALGORITHMS[config.algo]
        self.parameter_server = parameter_server
        self.replay_shards = replay_shards or []
        self.pending_adds: list = []  # this worker's replay writes not yet stored
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
        self.model = build_model(cfg.model, self.observation_space, self.action_space, self.spec.model_head)
        self.model.eval()
        self.version = -1
        self.frames_per_step = frames_per_step(cfg.env.id, cfg.env.options)
        self.obs = np.stack([env.reset()[0] for env in self.envs]).astype(self.observation_space.dtype)
        self.episode_start = np.ones(len(self.envs), dtype=bool)
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

    def _rollout(self, progress: Progress) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        start = time.perf_counter()
        pulled = self.pull_weights()
        T, K = self.config.runtime.fragment_length, len(self.envs)
        behaviour = {}
        if self.spec.behaviour is not None:
            # The worker's rank among the current workers places it on the exploration ladder.
            behaviour = self.spec.behaviour(
                self.config.algo_config, progress.get("rank", self.worker_index), progress.get("num_workers", 1), K,
                progress.get("env_steps", 0),
            )
        fragment = {
            "obs": np.empty((T, K, *self.obs.shape[1:]), dtype=self.obs.dtype),
            "rewards": np.empty((T, K), dtype=np.float32),
            "terminated": np.empty((T, K), dtype=bool),
            "truncated": np.empty((T, K), dtype=bool),
            "episode_start": np.empty((T, K), dtype=bool),
            "timeout_value": np.zeros((T, K), dtype=np.float32),
        }
        episode_returns, episode_lengths = [], []
        truncated_obs, truncated_at = [], []
        env_time = 0.0
        obs_tensor = torch.from_numpy(self.obs)  # shares memory with self.obs

        with torch.inference_mode():
            for t in range(T):
                fragment["obs"][t] = self.obs
                fragment["episode_start"][t] = self.episode_start
                # What the policy reports about its choice (actions, log-probabilities,
                # values, Q-values) is recorded under the names it gives.
                for key, value in self.model.act(obs_tensor, **behaviour).items():
                    if t == 0:
                        fragment[key] = np.empty((T, K), dtype=np.int64 if key == "actions" else np.float32)
                    fragment[key][t] = value.numpy()
                actions = fragment["actions"][t]
                env_start = time.perf_counter()
                for k, env in enumerate(self.envs):
                    obs, reward, terminated, truncated, info = env.step(int(actions[k]))
                    fragment["rewards"][t, k] = reward
                    fragment["terminated"][t, k] = terminated
                    fragment["truncated"][t, k] = truncated
                    if "episode_return" in info:
                        episode_returns.append(info["episode_return"])
                        episode_lengths.append(info["episode_length"])
                    self.episode_start[k] = terminated or truncated
                    if terminated or truncated:
                        if truncated and not terminated:
                            truncated_obs.append(obs)
                            truncated_at.append((t, k))
                        obs, _ = env.reset()
                    self.obs[k] = obs
                env_time += time.perf_counter() - env_start

            fragment["last_obs"] = self.obs.copy()
            fragment["bootstrap_value"] = self.model.value(obs_tensor).numpy().astype(np.float32)
            if truncated_obs:
                # A time limit is not a terminal state: its target bootstraps from V(final obs).
                values = self.model.value(torch.from_numpy(np.stack(truncated_obs))).numpy()
                for (t, k), value in zip(truncated_at, values):
                    fragment["timeout_value"][t, k] = value
        fragment["policy_version"] = np.int64(self.version)
        if self.spec.worker_postprocess is not None:
            fragment.update(self.spec.worker_postprocess(fragment, self.config.algo_config))

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

    @ray.method(num_returns=2)
    def sample(self, progress: Optional[Progress] = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One fragment of ``fragment_length`` steps from every env copy.

        Returns ``(fragment, summary)``: the driver reads the small summary (episodes that
        ended, step counts) and hands the fragment's ref to the learner untouched.
        """
        return self._rollout(progress or {})

    def sample_to_replay(self, progress: Progress) -> dict[str, Any]:
        """One fragment, written to the replay shards; each env copy is one stream and always
        goes to the same shard, so a stream's frames stay in order there. Only what replay
        stores travels: the newest frame of each stack, actions, rewards, flags and the
        initial priorities. A worker sends its next fragment only once the shards stored the
        previous one, so a slow shard slows the workers instead of filling memory."""
        fragment, summary = self._rollout(progress)
        ray.get(self.pending_adds)
        K = len(self.envs)
        stored = {"frames": newest_frames(fragment["obs"], self.frame_stack), "policy_version": fragment["policy_version"]}
        for key in REPLAY_KEYS:
            stored[key] = fragment[key]
        num_shards = len(self.replay_shards)
        streams = [self.worker_index * K + k for k in range(K)]
        self.pending_adds = []
        for shard_index, shard in enumerate(self.replay_shards):
            columns = [k for k, stream in enumerate(streams) if stream % num_shards == shard_index]
            if not columns:
                continue
            part = {key: (value[:, columns] if isinstance(value, np.ndarray) and value.ndim >= 2 else value)
                    for key, value in stored.items()}
            self.pending_adds.append(shard.add.remote([streams[k] for k in columns], part))
        return summary

    def a3c_step(self, progress: Progress) -> dict[str, Any]:
        """A3C's worker loop body: sample with the newest weights, compute the gradient of the
        loss on this fragment with this worker's own model copy, push it to the
        ParameterServer, which applies it at once; no waiting for other workers."""
        fragment, summary = self._rollout(progress)
        batch = {
            key: torch.from_numpy(np.ascontiguousarray(value))
            for key, value in fragment.items()
            if isinstance(value, np.ndarray) and value.ndim >= 1
        }
        self.model.train()
        gradients, stats = self.spec.worker_gradients(self.model, batch, self.config.algo_config)
        self.model.eval()
        applied = ray.get(
            self.parameter_server.apply_gradients.remote(gradients, self.version, progress.get("env_steps", 0))
        )
        summary["learner"] = {**stats, **applied["stats"]}
        summary["policy_lag"] = applied["lag"]
        summary["server_version"] = applied["version"]
        return summary

    def get_weights(self) -> tuple[int, dict[str, np.ndarray]]:
        """The policy version this worker holds and its weights (for inspection and tests)."""
        return self.version, get_weights(self.model)

    def close(self) -> None:
        for env in self.envs:
            env.close()
