"""ParameterServer: the latest published weights, as one object ref, and their version.
In A3C mode it also owns the model and the shared optimizer and applies the gradients
workers push."""

from __future__ import annotations

from typing import Any, Optional

import ray


@ray.remote(num_cpus=0)
class ParameterServer:
    """Broadcasting is "put once, every worker gets the ref": the weights are ``ray.put``
    once per version and workers that ask get the same ref, so the object store copies them
    once per node, not once per worker."""

    def __init__(self):
        self.version = -1
        self.weights_ref: Optional[ray.ObjectRef] = None
        self.weights_version = -1
        self.model = None  # A3C mode only

    def publish(self, weights_ref: list[ray.ObjectRef], version: int) -> None:
        # The ref arrives wrapped in a list so that Ray hands over the ref, not the weights.
        if version > self.version:
            self.version = version
            self.weights_ref = weights_ref[0]
            self.weights_version = version

    def latest(self, known_version: int) -> Optional[tuple[int, list[ray.ObjectRef]]]:
        """``(version, [ref])`` when there is something newer than ``known_version``, else None."""
        if self.version <= known_version:
            return None
        if self.model is not None and self.weights_version != self.version:
            # A3C: weights change with every gradient; put them only when someone asks.
            from distrl.runtime.weights import get_weights

            self.weights_ref = ray.put(get_weights(self.model))
            self.weights_version = self.version
        if self.weights_ref is None:
            return None
        return self.version, [self.weights_ref]

    def get_version(self) -> int:
        return self.version

    # ------------------------------------------------------------------ A3C mode

    def setup(self, config: Any, observation_space: Any, action_space: Any) -> str:
        """Own the model and the shared optimizer (A3C); version 0 is the initial weights."""
        import torch

        from distrl.algos import ALGORITHMS
        from distrl.models import build_model

        torch.manual_seed(config.seed)
        spec = ALGORITHMS[config.algo]
        self.model = build_model(config.model, observation_space, action_space, spec.model_head)
        anneal = config.stop.env_steps or getattr(config.algo_config, "anneal_env_steps", None)
        self.algorithm = spec.learner_class(config.algo_config, self.model, anneal)
        self.version = 0
        return "cpu (parameter server)"

    def apply_gradients(self, gradients: list, based_on_version: int, env_steps: int) -> dict[str, Any]:
        """Apply one worker's gradients at once with the shared optimizer and bump the version.
        ``lag`` is how many other updates landed since that worker pulled its weights."""
        stats = self.algorithm.apply_gradients(gradients, env_steps)
        lag = self.version - based_on_version
        self.version += 1
        return {"version": self.version, "lag": lag, "stats": stats}

    def get_state(self) -> dict[str, Any]:
        from distrl.runtime.learner import _to_cpu

        model_state = {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()}
        return {"model": model_state, "algorithm": _to_cpu(self.algorithm.state_dict()), "version": self.version,
                "updates": self.version}

    def set_state(self, state: dict[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.version = int(state["version"])
        return self.version

    def device_name(self) -> str:
        return "cpu (parameter server)"
