"""Data-parallel learners (``runtime.num_learners``): N learners share each gradient step.

Every learner holds the whole batch. A gradient step's samples are chosen as one learner
would choose them (the same generator, seeded alike, on every learner: PPO's minibatch, a
replay batch, all of a batch's env columns), and each learner computes the loss on its own
contiguous share of them. Its gradient, weighted by that share, is summed over the learners
(``torch.distributed``), so that every learner applies the gradient of the whole step and
their weights stay equal, step after step, within float rounding: the mean loss over all of a
step's samples is the share-weighted sum of the learners' mean losses. Statistics a loss takes
over a step's samples (advantage normalisation) are taken over all of them (``normalize``).

Why the whole batch on every learner rather than a part of it: the N shares of a step are then
exactly the samples one learner would take, and no learner waits for another's data. The price
is that every learner fetches and collates every fragment.

An algorithm takes part by choosing its samples, then ``take`` (rows) or ``columns`` (env
columns of a time-major batch), and passing the share it gets to ``gradient_step``. Alone
(one learner, the default) every call here is free: the whole step, weight 1, no messages.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

# The per-env fields of a time-major batch, ``[B, ...]``; every other field is per step,
# ``[T, B, ...]``. They are runtime/fragment.py's ``env`` fields (tests/algos/test_parallel.py
# checks that the two agree).
ENV_FIELDS = frozenset({"last_obs", "bootstrap_value", "initial_state"})


class Shard:
    """This learner's place among the run's learners: ``rank`` of ``size``, and the
    ``torch.distributed`` process group they sum their gradients in (None alone)."""

    def __init__(self, rank: int = 0, size: int = 1, group: Any = None):
        self.rank, self.size, self.group = rank, size, group

    @classmethod
    def join(cls, rank: int, size: int, address: str, backend: str, timeout_s: float) -> "Shard":
        """Join the group of ``size`` learners at ``address`` (``tcp://HOST:PORT``) as
        ``rank``; returns when all have joined. A learner that joins again (after a restore)
        leaves its old group first. ``timeout_s``: how long a gradient sum waits for the others."""
        if dist.is_initialized():
            dist.destroy_process_group()
        dist.init_process_group(
            backend, init_method=address, rank=rank, world_size=size, timeout=datetime.timedelta(seconds=timeout_s)
        )
        return cls(rank, size, dist.group.WORLD)

    def same_start(self, tensors: list[torch.Tensor]) -> None:
        """Give every learner the first one's ``tensors`` (a model's weights before training):
        seeded alike, learners build equal models, but equal weights need not rest on every
        node drawing the same numbers."""
        if self.alone:
            return
        for tensor in tensors:
            dist.broadcast(tensor, src=0, group=self.group)

    @property
    def alone(self) -> bool:
        return self.size == 1

    def bounds(self, count: int) -> tuple[int, int]:
        """This learner's contiguous share ``[start, stop)`` of ``count`` samples."""
        return count * self.rank // self.size, count * (self.rank + 1) // self.size

    def take(self, count: int) -> tuple[slice, float]:
        """This learner's rows of a step's ``count`` samples, and their share of the step (the
        weight of its gradient)."""
        start, stop = self.bounds(count)
        if stop == start:
            raise ValueError(
                f"a gradient step of {count} sample(s) cannot be shared by {self.size} learners: each needs at "
                f"least one. Use fewer runtime.num_learners, or larger steps (fewer minibatches, a larger batch)."
            )
        return slice(start, stop), (stop - start) / count

    def columns(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], float]:
        """This learner's env columns of a time-major batch (views, no copies), and their
        share of the batch."""
        if self.alone:
            return batch, 1.0
        count = next(value.shape[0] for key, value in batch.items() if key in ENV_FIELDS)
        mine, share = self.take(count)
        return {key: value[mine] if key in ENV_FIELDS else value[:, mine] for key, value in batch.items()}, share

    def sum_gradients(self, parameters: list[nn.Parameter], weight: float) -> None:
        """Replace each gradient by the share-weighted sum of all learners' (one message: the
        gradients flattened into one buffer)."""
        if self.alone:
            return
        grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        flat.mul_(weight)
        dist.all_reduce(flat, group=self.group)
        parts = flat.split([grad.numel() for grad in grads])
        torch._foreach_copy_(grads, [part.view_as(grad) for part, grad in zip(parts, grads)])

    def weighted_sum(self, value: torch.Tensor, weight: float) -> torch.Tensor:
        """The share-weighted sum over the learners of a statistic of each one's share (a
        step's mean over all its samples, from each learner's mean over its own)."""
        if self.alone:
            return value
        total = (value.detach().float() * weight).reshape(1)
        dist.all_reduce(total, group=self.group)
        return total[0]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the learners (a new tensor)."""
        if self.alone:
            return values
        total = values.clone()
        dist.all_reduce(total, group=self.group)
        return total

    def share(self, value: Any) -> Any:
        """The first learner's ``value`` on every learner (pickled; what the others pass is
        ignored): a replay batch that only the first one sampled."""
        if self.alone:
            return value
        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def mean_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """An update's statistics averaged over the learners (each reports its share's)."""
        if self.alone or not stats:
            return stats
        keys = sorted(stats)
        values = torch.tensor([float(stats[key]) for key in keys], dtype=torch.float64)
        dist.all_reduce(values, group=self.group)
        return {key: float(value) / self.size for key, value in zip(keys, values)}


ALONE = Shard()


def normalize(advantages: torch.Tensor, shard: Optional[Shard] = None) -> torch.Tensor:
    """Zero mean, unit standard deviation (a single value is left as it is); with ``shard``,
    over the samples of all the learners' shares together, so each learner normalises its
    share as one learner would normalise the whole step."""
    if shard is None or shard.alone:
        if advantages.numel() <= 1:
            return advantages
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    flat = advantages.detach().double().reshape(-1)
    size = torch.tensor(float(flat.numel()), dtype=torch.float64)
    count, total, squares = shard.sum(torch.stack([size, flat.sum(), (flat * flat).sum()]))
    if count <= 1:
        return advantages
    mean = total / count
    std = ((squares - count * mean * mean) / (count - 1)).clamp(min=0).sqrt()
    return (advantages - mean.to(advantages.dtype)) / (std.to(advantages.dtype) + 1e-8)
