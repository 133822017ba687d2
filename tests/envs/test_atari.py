import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distrl.envs import family_of, frames_per_step, make_env
from distrl.envs.wrappers import FrameStack

pytest.importorskip("ale_py")


def test_pong_observations_are_uint8_frame_stacks():
    env = make_env("ALE/Pong-v5", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)
    for _ in range(20):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert family_of("ALE/Pong-v5").pixels
    assert frames_per_step("ALE/Pong-v5", {}) == 4 and frames_per_step("ALE/Pong-v5", {"frame_skip": 2}) == 2


def test_atari_env_passes_the_gymnasium_checker():
    check_env(make_env("ALE/Breakout-v5", seed=0), skip_render_check=True)


def test_frame_stack_shifts_in_the_newest_frame():
    env = make_env("ALE/Breakout-v5", seed=1)
    obs0, _ = env.reset()
    assert all(np.array_equal(obs0[i], obs0[0]) for i in range(4))  # filled with the first frame
    obs1, *_ = env.step(1)
    np.testing.assert_array_equal(obs1[:3], obs0[1:])
    obs2, *_ = env.step(1)
    np.testing.assert_array_equal(obs2[:3], obs1[1:])


def test_rgb_option_stacks_channels():
    env = make_env("ALE/Pong-v5", seed=0, grayscale=False, frame_stack=2, screen_size=64)
    obs, _ = env.reset()
    assert obs.shape == (6, 64, 64) and obs.dtype == np.uint8


def test_life_loss_is_terminal_in_training_but_the_game_goes_on():
    """Breakout has 5 lives: training sees a terminal at each loss, the real episode (and
    its return) only at the end of the game; evaluation sees one episode per game."""
    env = make_env("ALE/Breakout-v5", seed=0)
    env.reset()
    terminals, game_ends = 0, 0
    while game_ends == 0:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            terminals += 1
            game_ends += "episode_return" in info
            env.reset()
    assert terminals == 5 and game_ends == 1

    env = make_env("ALE/Breakout-v5", seed=0, terminal_on_life_loss=False)
    env.reset()
    while True:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            assert "episode_return" in info
            break


def test_frame_stack_wrapper_on_a_gray_space():
    env = FrameStack(make_env("ALE/Pong-v5", seed=0, frame_stack=1), 3)
    assert env.observation_space.shape == (3, 84, 84)
