"""ReplayBuffer shards: uniform or prioritized, one or more actors (the replay flow,
``runtime/flows/replay.py``).

Storage is per *stream*: each env copy of each worker writes its steps, in order, into its
own ring of ``capacity / streams`` slots. A step stores one frame (the newest of the
observation's frame stack) and the fragment fields marked ``replay`` in
``runtime/fragment.py`` (action, raw reward, episode flags, initial priority, policy
version). An image observation is rebuilt from the frames before it in the same stream when
it is sampled, so each 84x84 frame is stored once, not four times, and a stack never reaches
across an episode start.

A sample is a transition and the window of the ``n_step`` steps that follow it (rewards and
episode flags, ``[B, n]``), with the observation the window ends on: the learner's algorithm
turns the window into its target. A transition ``i`` of a stream can be sampled once its n
following steps are stored and while its frame history is still in the ring.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional, cast

import numpy as np
import ray

from distrl.runtime.fragment import replay_columns


def global_weights(parts: list[dict[str, Any]], beta: float) -> np.ndarray:
    """Importance-sampling weights (Schaul et al. 2016) for samples drawn from one or more
    shards: each transition was drawn with P(i) = p_i / (sum of all shards' priorities), so
    w_i = (N P(i))^-beta / max w, with N the transitions in all shards. Each part holds a
    shard's "priority" (of its samples), "total" and "size"."""
    total = sum(float(part["total"]) for part in parts)
    size = sum(int(part["size"]) for part in parts)
    priority = np.concatenate([part["priority"] for part in parts])
    weights = (size * priority / total) ** (-beta)
    return (weights / weights.max()).astype(np.float32)


def window_length(ended: np.ndarray) -> np.ndarray:
    """Steps in each window ``[B, n]`` up to and including the first episode end (n if none)."""
    n = ended.shape[1]
    return np.where(ended.any(1), ended.argmax(1) + 1, n)


class SumTree:
    """A binary tree whose internal nodes hold the sum of their children: sampling leaf i
    with probability p_i / sum(p) and updating p_i both take O(log n), and both are
    vectorised over a batch of leaves."""

    def __init__(self, capacity: int):
        self.size = 1 << max(1, (max(capacity, 2) - 1).bit_length())
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(leaves) + self.size]

    def update(self, leaves: np.ndarray, values: np.ndarray) -> None:
        index = np.asarray(leaves, dtype=np.int64) + self.size
        if index.size == 0:
            return
        self.tree[index] = values
        index = np.unique(index // 2)
        while True:
            self.tree[index] = self.tree[2 * index] + self.tree[2 * index + 1]
            if index[0] == 1:
                return
            index = np.unique(index // 2)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` leaves, stratified: one uniform draw in each of ``count`` equal slices of
        the total, each walked down from the root."""
        targets = (np.arange(count) + rng.random(count)) * (self.total / count)
        index = np.ones(count, dtype=np.int64)
        while index[0] < self.size:
            left = 2 * index
            left_sum = self.tree[left]
            go_right = targets > left_sum
            targets = np.where(go_right, targets - left_sum, targets)
            index = np.where(go_right, left + 1, left)
        leaves = index - self.size
        # Rounding can land on an empty leaf at a boundary; draw those again.
        for _ in range(8):
            empty = self.get(leaves) <= 0
            if not empty.any():
                break
            leaves[empty] = self.sample(int(empty.sum()), rng) if self.total > 0 else leaves[empty]
        return leaves


@ray.remote(num_cpus=0)
class ReplayBuffer:
    def __init__(
        self,
        capacity: int,
        expected_streams: int,
        frame_stack: int,
        n_step: int,
        prioritized: bool,
        alpha: float,
        seed: int,
    ):
        self.frame_stack = frame_stack
        self.n_step = n_step
        self.prioritized = prioritized
        self.alpha = alpha
        self.expected_streams = max(expected_streams, 1)
        self.slots = max(capacity // self.expected_streams, n_step + frame_stack + 1)
        self.rng = np.random.default_rng(seed)
        self.rows: dict[int, int] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.count = np.zeros(0, dtype=np.int64)
        self.tree = SumTree(1)
        self.started = (os.getpid(), time.time())

    # ------------------------------------------------------------------ writing

    def _valid_range(self, count: int) -> tuple[int, int]:
        """Absolute indices [low, high] of a stream's transitions that can be sampled."""
        low = max(0, count - self.slots + self.frame_stack - 1)
        return low, count - 1 - self.n_step

    def _leaves(self, row: int, absolute: np.ndarray) -> np.ndarray:
        return row * self.slots + absolute % self.slots

    def _add_row(self, stream: int, step: dict[str, np.ndarray]) -> int:
        """A ring for a new stream. Rows are allocated for the expected streams at once and
        doubled when more arrive (a replaced or added worker), so the frames are rarely copied."""
        row = len(self.rows)
        self.rows[stream] = row
        allocated = self.count.size
        if row >= allocated:
            rows = max(self.expected_streams, 2 * allocated)
            for key, example in step.items():
                grown = np.zeros((rows, self.slots, *example.shape[1:]), dtype=example.dtype)
                if key in self.arrays:
                    grown[:allocated] = self.arrays[key]
                self.arrays[key] = grown
            self.count = np.concatenate([self.count, np.zeros(rows - allocated, dtype=np.int64)])
            tree = SumTree(rows * self.slots)
            if allocated:
                old = np.arange(allocated * self.slots)
                tree.update(old, self.tree.get(old))
            self.tree = tree
        return row

    def add(self, streams: list[int], fragment: dict[str, Any]) -> int:
        """Append a fragment's columns, one stream each: a fragment, or what a worker sends
        of it (``fragment.replay_columns``). Returns the number of transitions that can be
        sampled."""
        columns = fragment if "frames" in fragment else replay_columns(fragment, self.frame_stack)
        T = columns["frames"].shape[0]
        for column, stream in enumerate(streams):
            step = {key: value[:, column] for key, value in columns.items()}
            row = self.rows.get(stream)
            if row is None:
                row = self._add_row(stream, step)
            before = int(self.count[row])
            absolute = before + np.arange(T)
            for key, value in step.items():
                self.arrays[key][row, absolute % self.slots] = value
            after = before + T
            self.count[row] = after
            (low0, high0), (low1, high1) = self._valid_range(before), self._valid_range(after)
            # No longer sampleable: slots reused, or frame history gone from the ring.
            gone = np.arange(low0, min(low1 - 1, high0) + 1)
            self.tree.update(self._leaves(row, gone), np.zeros(gone.size))
            # Newly sampleable: their n following steps have arrived.
            new = np.arange(max(high0 + 1, low1), high1 + 1)
            if new.size:
                p = self.arrays["priorities"][row, new % self.slots].astype(np.float64)
                self.tree.update(self._leaves(row, new), p**self.alpha if self.prioritized else np.ones(new.size))
        return self.size()

    # ------------------------------------------------------------------ reading

    def size(self) -> int:
        used = self.count[: len(self.rows)]
        return int(sum(max(0, high - low + 1) for low, high in map(self._valid_range, used)))

    def _stack(self, rows: np.ndarray, absolute: np.ndarray) -> np.ndarray:
        """Observations rebuilt from stored frames: the frame at ``absolute`` and the
        ``frame_stack - 1`` before it in the stream, repeating an episode's first frame as the
        env's frame stack does after a reset."""
        frames = self.arrays["frames"]
        parts = [frames[rows, absolute % self.slots]]
        current = absolute.copy()
        for _ in range(self.frame_stack - 1):
            at_start = self.arrays["episode_start"][rows, current % self.slots]
            current = np.where(at_start, current, current - 1)
            parts.insert(0, frames[rows, current % self.slots])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def sample_batches(self, batch_size: int, beta: float, count: int) -> Optional[list[dict[str, np.ndarray]]]:
        """``count`` batches in one call, so the learner pays one round trip for several
        gradient steps; None while nothing can be sampled yet."""
        if self.tree.total <= 0:
            return None
        # Not None: sample() returns None only when the total priority is 0, checked above.
        return cast(list[dict[str, np.ndarray]], [self.sample(batch_size, beta) for _ in range(count)])

    def sample(self, batch_size: int, beta: float) -> Optional[dict[str, np.ndarray]]:
        """``batch_size`` transitions drawn with probability proportional to their priority
        (uniformly without prioritization); None while nothing can be sampled yet."""
        if self.tree.total <= 0:
            return None
        leaves = self.tree.sample(batch_size, self.rng)
        rows, slots = np.divmod(leaves, self.slots)
        newest = self.count[rows] - 1
        absolute = newest - (newest - slots) % self.slots
        window = absolute[:, None] + np.arange(self.n_step)
        taken = lambda key: self.arrays[key][rows[:, None], window % self.slots]  # noqa: E731
        terminated, truncated = taken("terminated"), taken("truncated")
        steps = window_length(terminated | truncated)
        end_slots = (absolute + steps - 1) % self.slots
        # The learner weighs samples over all shards from "priority", "total" and "size";
        # "weights" are this shard's alone.
        priority = self.tree.get(leaves)
        size = self.size()
        return {
            "priority": priority,
            "total": np.float64(self.tree.total),
            "size": np.int64(size),
            "obs": self._stack(rows, absolute),
            "actions": self.arrays["actions"][rows, slots],
            "rewards": taken("rewards"),
            "terminated": terminated,
            "truncated": truncated,
            "next_obs": self._stack(rows, absolute + steps),
            "cut": self.arrays["truncated"][rows, end_slots] & ~self.arrays["terminated"][rows, end_slots],
            "cut_value": self.arrays["timeout_value"][rows, end_slots],
            "weights": global_weights([{"priority": priority, "total": self.tree.total, "size": size}], beta),
            "policy_version": self.arrays["policy_version"][rows, slots],
            "leaves": leaves,
            "absolute": absolute,
        }

    def incarnation(self) -> tuple[int, float]:
        """Changes when Ray restarts this actor, empty: how the driver counts restarts."""
        return self.started

    def describe(self) -> dict[str, Any]:
        """What is stored, for people and tests: array shapes and the number of transitions."""
        return {
            "shapes": {key: value.shape for key, value in self.arrays.items()},
            "size": self.size(),
            "stored_steps": int(self.count.sum()),
            "streams": dict(self.rows),
            "slots_per_stream": self.slots,
        }

    def update_priorities(self, leaves: np.ndarray, absolute: np.ndarray, priorities: np.ndarray) -> None:
        """New |TD error| priorities for sampled transitions still in the buffer."""
        if not self.prioritized:
            return
        # After a restart the shard is empty: priorities for what it held before are dropped.
        known = leaves // self.slots < len(self.count)
        leaves, absolute, priorities = leaves[known], absolute[known], np.asarray(priorities)[known]
        rows, slots = np.divmod(leaves, self.slots)
        newest = self.count[rows] - 1
        still_there = newest - (newest - slots) % self.slots == absolute
        low = np.array([self._valid_range(c)[0] for c in self.count[rows]])
        priorities = np.asarray(priorities, np.float64)
        # A NaN priority would make the sum tree's total NaN and every later sample garbage.
        keep = still_there & (absolute >= low) & (self.tree.get(leaves) > 0) & np.isfinite(priorities)
        self.tree.update(leaves[keep], priorities[keep] ** self.alpha)
