"""Dict and Tuple observations, packed into one flat row of bytes.

Every other part of distrl moves observations as arrays of one shape and dtype: the vector
envs stack them, fragments and replay store them, ``collate`` concatenates them and Ray ships
them. Rather than teach each of those a nested layout, an env whose observations are a
``Dict`` or ``Tuple`` (a Doom screen and its game variables, a user's camera and joint angles)
is wrapped once, in ``make_env``, by :class:`PackObservation`: each observation becomes one
``uint8`` row holding every part's bytes. The model unpacks the row at its first layer
(``models/multi_input.py``) and gives each part its own encoder.

Bytes rather than a common float dtype: images stay one byte a pixel in fragments and replay
(a float row would make a Doom stack four times larger), and vectors keep their float32 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Union

import gymnasium as gym
import numpy as np

from distrl.errors import ConfigError

Composite = Union[gym.spaces.Dict, gym.spaces.Tuple]


@dataclass(frozen=True)
class Part:
    """One leaf of the observation: where its bytes sit in the row, and what they are."""

    name: str  # "screen", "variables", "0", "arm/joints": its path in the Dict or Tuple
    path: tuple[Any, ...]  # keys and indices from the top
    shape: tuple[int, ...]  # as the model sees it: images channel-first [C, H, W]
    dtype: np.dtype  # uint8 (pixels) or float32 (everything else)
    start: int  # byte offset in the row
    nbytes: int
    one_hot: int = 0  # a Discrete leaf's n: packed as a one-hot float32 vector
    one_hot_start: int = 0  # ... and its first value (gymnasium's Discrete(n, start=s))
    channel_last: bool = False  # an [H, W, C] image, transposed when packed


def _leaves(space: gym.Space, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            yield from _leaves(sub, (*path, key))
    elif isinstance(space, gym.spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            yield from _leaves(sub, (*path, index))
    else:
        yield path, space


def _is_channel_last(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4)


def _part(path: tuple[Any, ...], leaf: gym.Space, start: int, whole: gym.Space) -> Part:
    name = "/".join(str(key) for key in path)
    if isinstance(leaf, gym.spaces.Discrete):
        n = int(leaf.n)
        return Part(name, path, (n,), np.dtype(np.float32), start, 4 * n, one_hot=n, one_hot_start=int(leaf.start))
    if isinstance(leaf, (gym.spaces.Box, gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        shape = tuple(int(s) for s in leaf.shape)
        if leaf.dtype == np.uint8:
            channel_last = _is_channel_last(shape)
            if channel_last:
                shape = (shape[2], shape[0], shape[1])
            elif len(shape) == 2:
                shape = (1, *shape)  # a gray [H, W] image: one channel, so the CNN can take it
            return Part(name, path, shape, np.dtype(np.uint8), start, int(np.prod(shape)), channel_last=channel_last)
        return Part(name, path, shape, np.dtype(np.float32), start, 4 * int(np.prod(shape)))
    raise ConfigError(
        f"Observation part {name!r} is a {type(leaf).__name__} space ({leaf}); distrl takes Dict and Tuple "
        f"observations whose parts are Box (images as uint8, vectors), Discrete (one-hot), MultiBinary or "
        f"MultiDiscrete (as numbers). The whole observation space is {whole}."
    )


class PackedSpace(gym.spaces.Box):
    """A flat ``uint8`` Box whose rows are packed Dict or Tuple observations; ``original`` is
    the env's own space and ``parts`` says where each leaf sits."""

    def __init__(self, original: Composite):
        parts: list[Part] = []
        start = 0
        for path, leaf in _leaves(original):
            part = _part(path, leaf, start, original)
            parts.append(part)
            start += part.nbytes
        if not parts:
            raise ConfigError(f"The observation space {original} has no parts to learn from.")
        self.original = original
        self.parts = tuple(parts)
        super().__init__(0, 255, (start,), np.uint8)

    def pack(self, observation: Any) -> np.ndarray:
        row = np.empty(self.shape, np.uint8)
        for part in self.parts:
            value = observation
            for key in part.path:
                value = value[key]
            if part.one_hot:
                array = np.zeros(part.one_hot, np.float32)
                array[int(value) - part.one_hot_start] = 1.0
            else:
                array = np.asarray(value, dtype=part.dtype)
                if part.channel_last:
                    array = array.transpose(2, 0, 1)
            row[part.start : part.start + part.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        return row

    def unpack(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """The parts of one packed row by name (as the model sees them); for tests and
        inspection, the model unpacks batches itself."""
        return {
            part.name: row[part.start : part.start + part.nbytes].view(part.dtype).reshape(part.shape)
            for part in self.parts
        }

    def __repr__(self) -> str:
        return f"Packed({self.original})"


class PackObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Dict or Tuple observations as packed ``uint8`` rows (see the module's docstring)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        assert isinstance(env.observation_space, (gym.spaces.Dict, gym.spaces.Tuple))
        self.packed = PackedSpace(env.observation_space)
        self.observation_space = self.packed

    def observation(self, observation: Any) -> np.ndarray:
        return self.packed.pack(observation)


def is_composite(space: gym.Space) -> bool:
    return isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple))
