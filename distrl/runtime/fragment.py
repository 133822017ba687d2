"""The fragment: the one data layout that moves from rollout workers to learners and
replay, declared once here (every key, its axes, its dtype, whether replay stores it).

A fragment is a dict of numpy arrays cut by one worker from its K env copies over T steps:

- ``step`` fields are time-major ``[T, K, ...]``;
- ``env`` fields are ``[K, ...]``: one row per env copy, for the state after the last step;
- ``fragment`` fields are one value for the whole fragment.

The worker allocates from this table, the learner's :func:`collate` concatenates by it,
and replay stores the fields marked ``replay`` (one row per step) plus the newest frame of
each observation. The policy's ``act`` may report only fields declared here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

STEP, ENV, FRAGMENT = "step", "env", "fragment"


@dataclass(frozen=True)
class Field:
    name: str
    per: str  # STEP, ENV or FRAGMENT
    dtype: Optional[type]  # None: the observation space's dtype and shape
    doc: str
    replay: bool = False  # replay stores it for every step


FIELDS = (
    Field("obs", STEP, None, "the observation the action was chosen on"),
    Field("episode_start", STEP, np.bool_, "obs is the first of its episode", replay=True),
    Field(
        "actions",
        STEP,
        None,
        "the action taken (policy output): int64 [T, K] for Discrete, [T, K, D] for the vector spaces",
        replay=True,
    ),
    Field("logp", STEP, np.float32, "log mu(a|s) under the behaviour policy (policy output)"),
    Field("values", STEP, np.float32, "V(s), or max_a Q(s, a) for Q-networks (policy output)"),
    Field("q_taken", STEP, np.float32, "Q(s, a) of the taken action (Q-network output)"),
    Field("rewards", STEP, np.float32, "the raw reward of the step", replay=True),
    Field("terminated", STEP, np.bool_, "the episode ended in a terminal state", replay=True),
    Field("truncated", STEP, np.bool_, "a time limit cut the episode here", replay=True),
    Field("timeout_value", STEP, np.float32, "V(final obs) where a time limit cut the episode, else 0", replay=True),
    Field("priorities", STEP, np.float32, "initial replay priority (the algorithm's worker_postprocess)", replay=True),
    Field("last_obs", ENV, None, "the observation after the last step"),
    Field("bootstrap_value", ENV, np.float32, "V(last_obs)"),
    Field("initial_state", ENV, np.float32, "a recurrent policy's state [S, H] before the first step"),
    Field("policy_version", FRAGMENT, np.int64, "the weights' version that sampled the fragment", replay=True),
)
SCHEMA: dict[str, Field] = {field.name: field for field in FIELDS}
# What replay keeps of each step besides the newest frame: the fields marked ``replay``.
REPLAY_FIELDS = tuple(field.name for field in FIELDS if field.replay)


def field(name: str) -> Field:
    """The declaration of ``name``; an unknown key is a programming error that names the fix."""
    try:
        return SCHEMA[name]
    except KeyError:
        raise KeyError(
            f"fragment key {name!r} is not declared in distrl/runtime/fragment.py (FIELDS); declare it there "
            f"with its axes and dtype"
        ) from None


def allocate(name: str, T: int, K: int, example: Optional[np.ndarray] = None) -> np.ndarray:
    """An empty ``step`` array ``[T, K, ...]`` for ``name``. Fields declared without a dtype
    (observations, actions) are shaped and typed like ``example``, one row of K values."""
    declared = field(name)
    if declared.dtype is None:
        assert example is not None, f"fragment key {name!r} takes its shape and dtype from an example row"
        return np.empty((T, *example.shape), dtype=example.dtype)
    fill = np.zeros if name == "timeout_value" else np.empty  # 0 where no time limit cut in
    return fill((T, K), dtype=declared.dtype)


def collate(fragments: list[dict[str, Any]], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Concatenate fragments along the env axis: ``step`` arrays ``[T, K, ...]`` x N ->
    ``[T, N*K, ...]``, ``env`` arrays ``[K, ...]`` x N -> ``[N*K, ...]``. Per-fragment
    values (the policy version) are the learner's bookkeeping, not batch data."""
    batch = {}
    for key in fragments[0]:
        per = field(key).per
        if per == FRAGMENT:
            continue
        array = np.concatenate([fragment[key] for fragment in fragments], axis=1 if per == STEP else 0)
        batch[key] = torch.from_numpy(array).to(device, non_blocking=True)
    return batch


def newest_frames(obs: np.ndarray, frame_stack: int) -> np.ndarray:
    """The newest frame of each stacked observation ``[T, B, C * stack, ...]``: replay
    stores every frame once and stacks them again when sampling."""
    return obs[:, :, -(obs.shape[2] // frame_stack) :] if frame_stack > 1 else obs


def replay_columns(fragment: dict[str, Any], frame_stack: int) -> dict[str, np.ndarray]:
    """What replay stores of a fragment, as ``[T, K, ...]`` columns: the newest frame of each
    observation and every ``replay`` field (a per-fragment value repeated for every step)."""
    shape = fragment["rewards"].shape
    columns = {"frames": newest_frames(fragment["obs"], frame_stack)}
    for name in REPLAY_FIELDS:
        if name not in fragment:
            if name == "priorities":
                columns[name] = np.ones(shape, np.float32)  # uniform until a learner says otherwise
                continue
            raise KeyError(f"replay needs fragment key {name!r}, which this fragment lacks")
        value = fragment[name]
        columns[name] = np.full(shape, value, field(name).dtype) if SCHEMA[name].per == FRAGMENT else value
    return columns
