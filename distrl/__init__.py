"""distrl: distributed actor-learner reinforcement learning on Ray and PyTorch.

The Python API (docs/api.md): ``distrl.train`` runs training and returns a ``Result``;
``distrl.Policy.load`` gives a trained policy to act with; ``distrl.make_env`` builds any env
distrl trains on, with the same preprocessing. They are imported on first use, so that
``import distrl`` stays quick and does not start torch or Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Policy", "Result", "make_env", "train"]

if TYPE_CHECKING:
    from distrl.api import Result, train
    from distrl.envs import make_env
    from distrl.policy import Policy

_HOMES = {"train": "distrl.api", "Result": "distrl.api", "make_env": "distrl.envs", "Policy": "distrl.policy"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'distrl' has no attribute {name!r}")
