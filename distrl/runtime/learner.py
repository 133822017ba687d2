"""Learner: owns the model and optimizer (on CUDA when there is one), turns fragments into
batches, calls the algorithm's update and publishes the new weights."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import ray
import torch

from distrl.algos import ALGORITHMS
from distrl.models import build_model
from distrl.runtime.replay import global_weights
from distrl.runtime.weights import get_weights


# Replay batches fetched per round trip to a shard.
REPLAY_CHUNK = 8


def fetch_surviving(refs: list[ray.ObjectRef]) -> tuple[list[Any], int]:
    """The objects behind ``refs`` that still exist, and how many were lost (their node left
    the cluster and their actor cannot make them again). One fetch for all when none is lost."""
    from ray.exceptions import ObjectLostError

    try:
        return ray.get(refs), 0
    except ObjectLostError:
        pass
    found = []
    for ref in refs:
        try:
            found.append(ray.get(ref))
        except ObjectLostError:
            pass
    return found, len(refs) - len(found)


# Fragment arrays with one row per env copy, not per step.
PER_ENV_KEYS = ("last_obs", "bootstrap_value")


def collate(fragments: list[dict[str, np.ndarray]], device: torch.device) -> dict[str, torch.Tensor]:
    """Concatenate fragments along the env axis: ``[T, K, ...]`` x N -> ``[T, N*K, ...]``;
    the per-env arrays (``last_obs``, ``bootstrap_value``) are ``[K, ...]`` and concatenate
    along their first axis."""
    batch = {}
    for key in fragments[0]:
        if key == "policy_version":
            continue
        axis = 0 if key in PER_ENV_KEYS else 1
        array = np.concatenate([fragment[key] for fragment in fragments], axis=axis)
        batch[key] = torch.from_numpy(array).to(device, non_blocking=True)
    return batch


@ray.remote
class Learner:
    """Created before the environment's spaces are known, so that its process starts (and
    imports torch) while the rollout workers build their environments; ``setup`` builds the
    model once the first worker reports the spaces."""

    def __init__(self, config: Any, parameter_server: Any, replay_shards: Optional[list] = None):
        self.config = config
        self.parameter_server = parameter_server
        self.replay_shards = replay_shards or []
        self.shard_totals = np.zeros(0)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def setup(self, observation_space: Any, action_space: Any) -> str:
        """Build the model and optimizer, publish version 0; returns the device's name."""
        config = self.config
        torch.manual_seed(config.seed)
        spec = ALGORITHMS[config.algo]
        self.model = build_model(config.model, observation_space, action_space, spec.model_head).to(self.device)
        # Schedules run over the user's env-step budget; the preset's horizon only applies
        # to runs that have none (a reward or time stop only).
        anneal = config.stop.env_steps or getattr(config.algo_config, "anneal_env_steps", None)
        self.algorithm = spec.learner_class(config.algo_config, self.model, anneal)
        self.version = 0
        self.updates = 0  # gradient steps for replay training, else updates (= versions)
        self.publish()
        return self.device_name()

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return "cpu"

    def publish(self) -> int:
        """Put the weights in the object store once and hand the ref to the ParameterServer.
        Waits for the ParameterServer so that a worker asking after this returns sees it."""
        weights_ref = ray.put(get_weights(self.model))
        ray.get(self.parameter_server.publish.remote([weights_ref], self.version))
        return self.version

    def update(self, fragment_refs: list[ray.ObjectRef], env_steps: int) -> dict[str, float]:
        """One update on these fragments (one from each worker for PPO/A2C), then publish.
        A fragment lost with its node (large ones live in the object store of the node that
        sampled them) is left out; with none left there is no update."""
        fragments, lost = fetch_surviving(fragment_refs)
        if not fragments:
            return {"no_update": True, "lost_fragments": lost, "learner_version": self.version}
        lags = [self.version - int(fragment["policy_version"]) for fragment in fragments]
        batch = collate(fragments, self.device)
        self.model.train()
        stats = self.algorithm.learn(batch, env_steps)
        self.version += 1
        self.updates += 1
        self.publish()
        stats["policy_lag"] = float(np.mean(lags))
        stats["learner_version"] = self.version
        stats["lost_fragments"] = lost
        return stats

    def train_from_replay(self, num_updates: int, env_steps: int) -> dict[str, float]:
        """``num_updates`` gradient steps on batches sampled from the replay shards (DQN),
        sending the new priorities back after each; then publish. Batches come in chunks of
        ``REPLAY_CHUNK`` per round trip, and the next chunk is requested before the current
        one is trained on, so sampling overlaps learning."""
        algorithm = self.algorithm
        beta = algorithm.priority_beta(env_steps)
        shards = self.replay_shards

        def request(count: int) -> list:
            # Each shard gives its share of the batch in proportion to its total priority
            # (as last reported), so that the batch is one draw over all shards.
            totals = self.shard_totals if len(self.shard_totals) == len(shards) else np.ones(len(shards))
            shares = np.maximum(1, np.round(algorithm.config.batch_size * totals / totals.sum())).astype(int)
            return [shard.sample_batches.remote(int(n), beta, count) for shard, n in zip(shards, shares)]

        totals: dict[str, float] = {}
        lags: list[float] = []
        steps = 0
        remaining = num_updates
        pending = request(min(REPLAY_CHUNK, remaining))
        self.model.train()
        while remaining > 0:
            chunks = ray.get(pending)
            count = min(REPLAY_CHUNK, remaining)
            remaining -= count
            if remaining > 0:
                pending = request(min(REPLAY_CHUNK, remaining))
            if all(chunk is None for chunk in chunks):
                break  # nothing sampleable yet
            self.shard_totals = np.array([chunk[-1]["total"] if chunk else 0.0 for chunk in chunks]) + 1e-12
            for j in range(count):
                parts = [(shard, chunk[j]) for shard, chunk in zip(shards, chunks) if chunk is not None]
                batch = {
                    key: torch.from_numpy(np.concatenate([part[key] for _, part in parts])).to(self.device)
                    for key in ("obs", "actions", "returns", "discount", "next_obs", "cut", "cut_value")
                }
                batch["weights"] = torch.from_numpy(global_weights([part for _, part in parts], beta)).to(self.device)
                stats, priorities = algorithm.learn(batch, env_steps)
                offset = 0
                for shard, part in parts:
                    size = len(part["leaves"])
                    shard.update_priorities.remote(part["leaves"], part["absolute"], priorities[offset : offset + size])
                    offset += size
                    lags.append(float(np.mean(self.version - part["policy_version"])))
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                steps += 1
        if steps:  # nothing sampleable yet: no new weights to publish
            self.version += 1
            self.updates += steps
            self.publish()
        result = {key: value / max(steps, 1) for key, value in totals.items()}
        result.update(gradient_steps=steps, priority_beta=beta, policy_lag=float(np.mean(lags)) if lags else 0.0)
        result["learner_version"] = self.version
        return result

    def get_state(self) -> dict[str, Any]:
        """Model and optimizer state on the CPU, for a checkpoint written by the driver."""
        model_state = {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()}
        algorithm_state = _to_cpu(self.algorithm.state_dict())
        return {"model": model_state, "algorithm": algorithm_state, "version": self.version, "updates": self.updates}

    def set_state(self, state: dict[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.version = int(state["version"])
        self.updates = int(state.get("updates", state["version"]))
        return self.publish()


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value
