"""Catch: a fruit falls from the top of a small grid and a 3-wide basket at the bottom must
be under it when it lands (+1 caught, -1 missed). Learned from pixels, it is the smallest
game on which a pixel-based agent can be checked end to end (as in bsuite's "catch" and
the Keras "Q-learning catch" example)."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym
import numpy as np


class CatchEnv(gym.Env):
    """Observation: ``[1, rows, columns]`` uint8, 255 where the fruit and the basket are.
    Actions: 0 left, 1 stay, 2 right. One episode is one fruit: ``rows - 1`` steps."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, rows: int = 10, columns: int = 10, render_mode: Optional[str] = None):
        if rows < 3 or columns < 3:
            raise ValueError(f"Catch needs at least a 3x3 grid, got {rows}x{columns}.")
        self.rows, self.columns = rows, columns
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (1, rows, columns), np.uint8)
        self.action_space = gym.spaces.Discrete(3)

    def _observation(self) -> np.ndarray:
        frame = np.zeros((1, self.rows, self.columns), dtype=np.uint8)
        frame[0, self.fruit_row, self.fruit_column] = 255
        frame[0, self.rows - 1, self.basket - 1 : self.basket + 2] = 255
        return frame

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self.fruit_row = 0
        self.fruit_column = int(self.np_random.integers(0, self.columns))
        self.basket = int(self.np_random.integers(1, self.columns - 1))  # the basket's centre
        return self._observation(), {}

    def step(self, action):
        self.basket = int(np.clip(self.basket + int(action) - 1, 1, self.columns - 2))
        self.fruit_row += 1
        terminated = self.fruit_row == self.rows - 1
        reward = 0.0
        if terminated:
            reward = 1.0 if abs(self.fruit_column - self.basket) <= 1 else -1.0
        return self._observation(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "rgb_array":
            return np.repeat(self._observation()[0][..., None], 3, axis=2)
        return None
