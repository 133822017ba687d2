"""The shared wrappers on a tiny real gymnasium env whose frames we can predict."""

from typing import Optional

import gymnasium as gym
import numpy as np
import pytest

from distrl.envs.wrappers import ButtonCombos, FrameStack, MaxAndSkip, ResizeFrame, check_options, max_pool2
from distrl.errors import ConfigError


class Counter(gym.Env):
    """Frame t is a 2x2 image: pixel (0, 0) holds t, pixel (1, 1) holds 10 on odd frames only
    (a flickering sprite). Reward 1 per frame; the episode ends after ``length`` frames."""

    def __init__(self, length: int = 10):
        self.length = length
        self.observation_space = gym.spaces.Box(0, 255, (2, 2), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _frame(self):
        frame = np.zeros((2, 2), np.uint8)
        frame[0, 0] = self.t
        frame[1, 1] = 10 if self.t % 2 else 0
        return frame

    def reset(self, *, seed: Optional[int] = None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action):
        self.t += 1
        return self._frame(), 1.0, self.t >= self.length, False, {}


def test_max_and_skip_pools_the_last_two_frames_and_sums_rewards():
    env = MaxAndSkip(Counter(), skip=4)
    env.reset()
    frame, reward, terminated, _, _ = env.step(0)
    assert reward == 4.0 and not terminated
    assert frame[0, 0] == 4 and frame[1, 1] == 10  # max of frames 3 (sprite on) and 4 (off)
    frame, *_ = env.step(0)
    assert frame[0, 0] == 8 and frame[1, 1] == 10
    frame, reward, terminated, _, _ = env.step(0)  # frames 9, 10: the game ends at 10
    assert terminated and reward == 2.0 and frame[0, 0] == 10


def test_frame_skip_one_passes_frames_through_unchanged():
    env = MaxAndSkip(Counter(length=3), skip=1)
    for _ in range(2):  # a second game must not see the first one's frames
        env.reset()
        frames = [env.step(0)[0] for _ in range(3)]
        assert [f[0, 0] for f in frames] == [1, 2, 3] and [f[1, 1] for f in frames] == [10, 0, 10]


def test_frame_stack_and_resize_shapes():
    env = FrameStack(ResizeFrame(Counter(), 8, interpolation="nearest"), 3)
    obs, _ = env.reset()
    assert obs.shape == (3, 8, 8) and np.all(obs == obs[0])
    obs, *_ = env.step(0)
    assert obs[-1, 0, 0] == 1 and obs[0, 0, 0] == 0


def test_button_combos_press_the_named_buttons():
    class Pad(Counter):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.MultiBinary(3)

    env = ButtonCombos(Pad(), ["A", "B", "LEFT"], [[], ["LEFT", "A"]])
    assert env.action_space == gym.spaces.Discrete(2)
    np.testing.assert_array_equal(env.action(1), [1, 0, 1])
    np.testing.assert_array_equal(env.action(0), [0, 0, 0])
    with pytest.raises(ConfigError, match="'JUMP'.*not on this game's pad"):
        ButtonCombos(Pad(), ["A", "B", "LEFT"], [["JUMP"]])


@pytest.mark.parametrize("value", [0, -1, 2.5, "4"])
def test_frame_options_must_be_whole_numbers_in_range(value):
    with pytest.raises(ConfigError, match="frame_skip must be a whole number >= 1"):
        check_options("atari", {"frame_skip": value}, {"frame_skip": 4})


def test_max_pool2_keeps_the_brightest_pixel_of_each_block():
    """Against the obvious loop over 2x2 blocks, on frames with and without leading axes."""
    rng = np.random.default_rng(0)
    for shape in [(6, 8), (3, 4, 6), (2, 1, 10, 4)]:
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        *lead, height, width = shape
        expected = np.zeros((*lead, height // 2, width // 2), np.uint8)
        for i in range(height // 2):
            for j in range(width // 2):
                expected[..., i, j] = frames[..., 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].max(axis=(-2, -1))
        np.testing.assert_array_equal(max_pool2(frames), expected)


def test_a_one_pixel_ball_keeps_its_brightness_under_max_but_not_under_area():
    field = np.full((8, 8), 87, np.uint8)
    field[3, 5] = 236
    assert max_pool2(field).max() == 236
    area = ResizeFrame(gym.make("CartPole-v1"), 4).observation(field[None])
    assert area.max() < 236


@pytest.mark.parametrize("value", ["nearest", "MAX", 2])
def test_downscale_takes_area_or_max(value):
    with pytest.raises(ConfigError, match="downscale must be one of area, max"):
        check_options("atari", {"downscale": value}, {"downscale": "area"})
