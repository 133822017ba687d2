"""NChain (Strens 2000, "A Bayesian framework for reinforcement learning"): a chain of
``n`` states where walking forward pays nothing until the far end pays ``large``, while
going back to the start always pays ``small``. With probability ``slip`` the agent does the
opposite of what it chose. The greedy short-term choice (go back for 2) is the trap that
tests exploration; the optimal policy walks to the end."""

from __future__ import annotations

from typing import Optional

import gymnasium as gym


class NChainEnv(gym.Env):
    """Observation: the state index (``Discrete(n)``). Actions: 0 forward, 1 back."""

    metadata = {"render_modes": []}

    def __init__(self, n: int = 5, slip: float = 0.2, small: float = 2.0, large: float = 10.0):
        if n < 2 or not 0 <= slip <= 1:
            raise ValueError(f"NChain needs n >= 2 and slip in [0, 1], got n={n}, slip={slip}.")
        self.n, self.slip, self.small, self.large = n, slip, small, large
        self.observation_space = gym.spaces.Discrete(n)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action):
        action = int(action)
        if self.np_random.random() < self.slip:
            action = 1 - action
        if action == 1:
            self.state, reward = 0, self.small
        elif self.state < self.n - 1:
            self.state, reward = self.state + 1, 0.0
        else:
            reward = self.large
        return self.state, reward, False, False, {}
