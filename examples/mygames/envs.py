"""An example of a user's own environment package (docs/environments.md, "Your own
environment"); the tests train it in each of the three forms distrl accepts.

GuessSign is a one-step task: the observation shows a sign and the action that matches it
pays 1, so random play scores ``length / 2`` and a policy that reads the sign ``length``.
"""

import gymnasium as gym
import numpy as np


class GuessSign(gym.Env):
    def __init__(self, length=10):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length

    def _observe(self):
        self.sign = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([self.sign], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = self.right = self.plus = 0
        return self._observe(), {}

    def step(self, action):
        reward = float((int(action) == 1) == (self.sign > 0))
        self.t += 1
        self.right += int(reward)
        self.plus += int(action) == 1
        info = {}
        if self.t >= self.length:
            # The env's own numbers about the episode, averaged over the last 100 episodes in
            # progress.jsonl, TensorBoard and W&B (docs/environments.md, "Your env's episode metrics").
            info["episode_metrics"] = {"accuracy": self.right / self.t, "plus_share": self.plus / self.t}
        return self._observe(), reward, False, self.t >= self.length, info


def make(length=10):
    return GuessSign(length=length)


gym.register("GuessSign-v0", entry_point=GuessSign)


class CopyBits(gym.Env):
    """Shows ``size`` random bits; each action entry that copies its bit pays ``1 / size``.
    ``action="binary"`` asks for a MultiBinary action (a console's buttons), ``"discrete"``
    for a MultiDiscrete one of ``size`` two-way choices. Random play scores half of
    ``length``, copying every bit ``length``."""

    def __init__(self, size=4, length=10, action="binary"):
        self.size, self.length = size, length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (size,), np.float32)
        if action == "binary":
            self.action_space = gym.spaces.MultiBinary(size)
        elif action == "discrete":
            self.action_space = gym.spaces.MultiDiscrete([2] * size)
        else:
            raise ValueError(f"action must be 'binary' or 'discrete', got {action!r}")

    def _observe(self):
        self.bits = self.np_random.integers(0, 2, self.size).astype(np.float32)
        return self.bits.copy()

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.bits))
        self.t += 1
        return self._observe(), reward, False, self.t >= self.length, {}


gym.register("CopyBits-v0", entry_point=CopyBits)


class LampAndSwitch(gym.Env):
    """A ``Dict`` observation (``Tuple`` with ``space="tuple"``): a small picture with a lamp lit
    on its left or right half, and a switch that reads 1 or -1. The action that pays 1 is the
    lamp's side, the other side when the switch reads -1, so neither part alone beats random
    play (half of ``length``) and both together score ``length``."""

    def __init__(self, length=10, space="dict"):
        self.length = length
        picture = gym.spaces.Box(0, 255, (8, 8, 1), np.uint8)  # [H, W, C], as cameras give it
        switch = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        if space == "dict":
            self.observation_space = gym.spaces.Dict({"picture": picture, "switch": switch})
        elif space == "tuple":
            self.observation_space = gym.spaces.Tuple((picture, switch))
        else:
            raise ValueError(f"space must be 'dict' or 'tuple', got {space!r}")
        self.action_space = gym.spaces.Discrete(2)

    def _observe(self):
        self.side, self.flip = self.np_random.integers(0, 2, 2)
        picture = np.zeros((8, 8, 1), np.uint8)
        picture[2:6, 4 * self.side : 4 * self.side + 4] = 255
        switch = np.array([-1.0 if self.flip else 1.0], np.float32)
        if isinstance(self.observation_space, gym.spaces.Dict):
            return {"picture": picture, "switch": switch}
        return picture, switch

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == self.side ^ self.flip)
        self.t += 1
        return self._observe(), reward, False, self.t >= self.length, {}


gym.register("LampAndSwitch-v0", entry_point=LampAndSwitch)
