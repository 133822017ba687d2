"""Preprocessing wrappers shared by the environment families. Each does one thing."""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from distrl.errors import EnvContractError


class SeedFirstReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Seeds the first ``reset()`` with the seed given to ``make_env`` when the caller passes
    none; later resets continue the seeded generator."""

    def __init__(self, env: gym.Env, seed: Optional[int]):
        gym.utils.RecordConstructorArgs.__init__(self, seed=seed)
        gym.Wrapper.__init__(self, env)
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


class EpisodeStats(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``episode_return`` and ``episode_length`` to ``info`` when a real episode ends.

    Placed below any wrapper that fakes episode ends (life loss) and above frame skipping, so
    the return is the game score and the length counts agent steps. Rewards are the raw
    ones; clipping happens at the learner.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs):
        self._return = 0.0
        self._length = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            info = dict(info, episode_return=self._return, episode_length=self._length)
        return obs, reward, terminated, truncated, info


# A metric's name becomes a TensorBoard tag and a W&B key ("episode/<name>"): letters, digits
# and _ . - / only, so that every tool shows it under the same name.
_METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,63}")


def episode_metrics_of(info: dict[str, Any], env_id: str = "the environment") -> dict[str, float]:
    """The env's own numbers about the episode that just ended: ``info["episode_metrics"]`` at
    its last step, a mapping from names to real numbers (a profit, a kill count, a success
    flag), as floats. Empty when the env sets none. Raises ``EnvContractError`` for anything
    else: a value dropped in silence would leave a user's chart empty with no reason given.

    The convention lives in the env, not in a config list of ``info`` keys, so that a custom
    env's metrics need no config at all and travel with the env to every run."""
    found = info.get("episode_metrics")
    if found is None:
        return {}
    if not isinstance(found, Mapping):
        raise EnvContractError(
            f"{env_id} put a {type(found).__name__} in info['episode_metrics'] at an episode's last step; "
            f"distrl expects a dict of names to numbers there, e.g. {{'profit': 1.5, 'success': True}} "
            "(docs/environments.md, section 'Your env's episode metrics')."
        )
    metrics: dict[str, float] = {}
    for name, value in found.items():
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            raise EnvContractError(
                f"{env_id} reports an episode metric named {name!r} in info['episode_metrics']; a name is a "
                f"string of at most 64 letters, digits and _ . - / (it becomes the TensorBoard tag "
                f"'episode/<name>')."
            )
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if not isinstance(value, (bool, np.bool_, numbers.Real)):
            raise EnvContractError(
                f"{env_id} reports episode metric {name!r} as a {type(value).__name__} ({str(value)[:80]!r}) in "
                f"info['episode_metrics']; distrl averages these over the last 100 episodes, so each value "
                f"must be one real number or a bool. Report a list or an array as one number per name."
            )
        metrics[name] = float(value)
    return metrics


class OneHot(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Discrete observations (FrozenLake's cell index) as one-hot float vectors."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        assert isinstance(env.observation_space, gym.spaces.Discrete)  # callers check it
        self.n = int(env.observation_space.n)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n,), np.float32)

    def observation(self, observation):
        one_hot = np.zeros(self.n, dtype=np.float32)
        one_hot[int(observation)] = 1.0
        return one_hot


class Discretize(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A continuous observation as one cell index of a grid: dimension ``d`` is cut into
    ``bins[d]`` equal intervals between ``bounds[d]`` (values outside fall in the edge cells).
    The cell index is row-major over the dimensions, so there are ``prod(bins)`` states."""

    def __init__(self, env: gym.Env, bins: list[int], bounds: list[list[float]]):
        gym.utils.RecordConstructorArgs.__init__(self, bins=bins, bounds=bounds)
        gym.ObservationWrapper.__init__(self, env)
        from distrl.errors import ConfigError

        shape = env.observation_space.shape
        assert shape is not None  # None only for composite (Dict, Tuple) spaces
        if len(bins) != shape[0] or len(bounds) != shape[0]:
            raise ConfigError(
                f"env.options.bins and bounds need one entry per observation dimension ({shape[0]}); "
                f"got {len(bins)} bins and {len(bounds)} bounds."
            )
        self.bins = np.asarray(bins, dtype=np.int64)
        self.low = np.asarray([b[0] for b in bounds], dtype=np.float64)
        self.high = np.asarray([b[1] for b in bounds], dtype=np.float64)
        self.observation_space = gym.spaces.Discrete(int(np.prod(self.bins)))

    def observation(self, observation):
        fraction = (np.asarray(observation, dtype=np.float64) - self.low) / (self.high - self.low)
        cells = np.clip((fraction * self.bins).astype(np.int64), 0, self.bins - 1)
        return int(np.ravel_multi_index(cells, self.bins))


class ResizeFrame(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Resizes frames to ``size x size``. Gray frames (``[H, W]``, ``[H, W, 1]`` or
    ``[1, H, W]``) come out 2-D; colour frames ``[H, W, 3]`` come out channel-first
    ``[3, size, size]``, or gray with ``to_gray``. Area interpolation by default; "nearest"
    keeps the hard edges of tiny grid games when scaling up."""

    def __init__(self, env: gym.Env, size: int = 84, to_gray: bool = False, interpolation: str = "area"):
        gym.utils.RecordConstructorArgs.__init__(self, size=size, to_gray=to_gray, interpolation=interpolation)
        gym.ObservationWrapper.__init__(self, env)
        self.size = size
        self.to_gray = to_gray
        # Imported here: OpenCV takes 0.11 s to import, which every process that makes any
        # env (the driver, each worker) paid at start-up, pixel games or not.
        import cv2

        self.cv2 = cv2
        self.interpolation = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[interpolation]
        shape = env.observation_space.shape
        assert shape is not None  # None only for composite (Dict, Tuple) spaces
        single_channel = len(shape) == 3 and shape[0] == 1
        self.color = len(shape) == 3 and shape[-1] == 3 and not single_channel and not to_gray
        out_shape = (3, size, size) if self.color else (size, size)
        self.observation_space = gym.spaces.Box(0, 255, out_shape, np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        if frame.ndim == 3 and frame.shape[0] == 1:  # one channel, first
            frame = frame[0]
        elif frame.ndim == 3 and frame.shape[-1] == 3:
            if not self.color:
                frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        elif frame.ndim == 3:  # one channel, last
            frame = frame[..., 0]
        frame = cv2.resize(frame, (self.size, self.size), interpolation=self.interpolation)
        if frame.ndim == 3:
            frame = np.ascontiguousarray(frame.transpose(2, 0, 1))
        return frame


def max_pool2(frames: np.ndarray) -> np.ndarray:
    """The brightest pixel of each 2x2 block of the last two axes (which must be even).

    Why: area interpolation averages an object smaller than an output pixel into the field
    around it. Pong's and Breakout's ball (2x4 screen pixels) keeps about half its contrast at
    44x44, and PPO on Pong learned about three times slower per env step on those frames than
    on 84x84 ones (BENCHMARKS.md, issue 31). Resizing to twice the size and keeping the
    brightest of each block gives the small frame the bright objects at full contrast, at the
    small frame's cost to the network."""
    *lead, height, width = frames.shape
    return frames.reshape(*lead, height // 2, 2, width // 2, 2).max(axis=(-3, -1))


class MaxPool2(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Halves ``[..., 2H, 2W]`` frames to ``[..., H, W]`` with ``max_pool2``."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and space.shape is not None
        *lead, height, width = space.shape
        assert height % 2 == 0 and width % 2 == 0, space.shape
        self.observation_space = gym.spaces.Box(0, 255, (*lead, height // 2, width // 2), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return max_pool2(frame)


class FrameStack(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Stacks the last ``k`` frames along the channel axis: ``[H, W]`` frames give
    ``[k, H, W]``, ``[C, H, W]`` frames give ``[k * C, H, W]``. Frames stay uint8. After a
    reset the stack is filled with copies of the first frame."""

    def __init__(self, env: gym.Env, k: int = 4):
        gym.utils.RecordConstructorArgs.__init__(self, k=k)
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)  # frames: it has low, high and a shape
        frame_shape = space.shape if len(space.shape) == 3 else (1, *space.shape)
        self._channels = frame_shape[0]
        self._stack = np.zeros((k * frame_shape[0], *frame_shape[1:]), dtype=space.dtype)
        low = np.repeat(np.broadcast_to(space.low, space.shape).reshape(frame_shape), k, axis=0)
        high = np.repeat(np.broadcast_to(space.high, space.shape).reshape(frame_shape), k, axis=0)
        self.observation_space = gym.spaces.Box(low, high, self._stack.shape, space.dtype)

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        frame = frame.reshape(self._channels, *self._stack.shape[1:])
        self._stack[:] = np.tile(frame, (self._stack.shape[0] // self._channels, 1, 1))
        return self._stack.copy(), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        c = self._channels
        self._stack[:-c] = self._stack[c:]
        self._stack[-c:] = frame.reshape(c, *self._stack.shape[1:])
        return self._stack.copy(), reward, terminated, truncated, info


class MaxAndSkip(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeats the action ``skip`` frames, sums the rewards, and returns the pixel-wise max
    of the last two frames (Atari sprites flicker between frames; for other games the max
    of two consecutive frames is harmless)."""

    def __init__(self, env: gym.Env, skip: int):
        gym.utils.RecordConstructorArgs.__init__(self, skip=skip)
        gym.Wrapper.__init__(self, env)
        self.skip = skip
        shape = env.observation_space.shape
        assert shape is not None  # None only for composite (Dict, Tuple) spaces
        self._frames = np.zeros((2, *shape), dtype=np.uint8)

    def step(self, action):
        if self.skip == 1:
            return self.env.step(action)
        total = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        for i in range(self.skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if i >= self.skip - 2:
                self._frames[i - (self.skip - 2)] = obs
            if terminated or truncated:
                # The episode ended before the last two frames: max with the newest frame only.
                self._frames[:] = obs
                break
        return self._frames.max(axis=0), total, terminated, truncated, info


class RewardScale(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """Multiplies rewards by ``scale``. Placed above EpisodeStats, so reported returns stay
    game scores."""

    def __init__(self, env: gym.Env, scale: float):
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        gym.RewardWrapper.__init__(self, env)
        self.scale = scale

    def reward(self, reward):
        return float(reward) * self.scale


class ButtonCombos(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """A discrete action set over a pad of binary buttons: action ``i`` presses the buttons
    of ``combos[i]`` (a list of button names; an empty list presses nothing)."""

    def __init__(self, env: gym.Env, buttons: list[str], combos: list[list[str]]):
        gym.utils.RecordConstructorArgs.__init__(self, buttons=buttons, combos=combos)
        gym.ActionWrapper.__init__(self, env)
        from distrl.errors import ConfigError

        self.combos = [list(combo) for combo in combos]
        self._presses = np.zeros((len(combos), len(buttons)), dtype=env.action_space.dtype or np.int8)
        for i, combo in enumerate(self.combos):
            for button in combo:
                if button not in buttons:
                    raise ConfigError(
                        f"Button {button!r} in action {combo} is not on this game's pad; its buttons are "
                        f"{[b for b in buttons if b]}."
                    )
                self._presses[i, buttons.index(button)] = 1
        self.action_space = gym.spaces.Discrete(len(combos))

    def action(self, action):
        return self._presses[int(action)].copy()


class PlayingButtons(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """The pad itself as the action: a ``MultiBinary`` over the buttons that play, each pressed
    or not. Buttons that pause or configure the console (``system``) stay released, so a
    policy cannot pause the game it is learning."""

    def __init__(self, env: gym.Env, buttons: list[Optional[str]], system: set[Optional[str]]):
        gym.utils.RecordConstructorArgs.__init__(self, buttons=buttons, system=system)
        gym.ActionWrapper.__init__(self, env)
        self.playing = [i for i, button in enumerate(buttons) if button not in system]
        self.names = [buttons[i] for i in self.playing]
        self._pad = np.zeros(len(buttons), dtype=env.action_space.dtype or np.int8)
        self.action_space = gym.spaces.MultiBinary(len(self.playing))

    def action(self, action):
        pad = self._pad.copy()
        pad[self.playing] = np.asarray(action, dtype=pad.dtype)
        return pad


# Image options shared by the pixel families, and the smallest value each accepts.
_MINIMUM = {"frame_skip": 1, "frame_stack": 1, "screen_size": 8, "noop_max": 0, "max_episode_steps": 0}
# Options that take one of a few words.
_CHOICES = {"downscale": ("area", "max")}


def check_options(family: str, options: dict[str, Any], known: dict[str, Any]) -> None:
    """Rejects an option the family does not have, naming the nearest one, and a frame
    option that is not a whole number in range."""
    from difflib import get_close_matches

    from distrl.errors import ConfigError

    for key, value in options.items():
        if key not in known:
            close = get_close_matches(key, list(known), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"'{key}' is not an option of the {family} environments.{hint} "
                f"Options and defaults: {', '.join(f'{k}={v!r}' for k, v in known.items())}."
            )
        if key in _MINIMUM and value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < _MINIMUM[key]:
                raise ConfigError(f"env.options.{key} must be a whole number >= {_MINIMUM[key]}, got {value!r}.")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f"env.options.{key} must be one of {', '.join(_CHOICES[key])}, got {value!r}.")
