import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distrl.envs import check_id, family_of, make_env
from distrl.envs.doom import SCENARIOS
from distrl.errors import ConfigError, EnvironmentNotAvailable

pytest.importorskip("vizdoom")


@pytest.mark.parametrize("env_id", list(SCENARIOS.values()))
def test_every_scenario_passes_the_checker_with_uint8_frame_stacks(env_id):
    env = make_env(env_id, seed=0)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert family_of(env_id).name == "doom"
    env.close()


def test_basic_plays_with_button_combinations():
    env = make_env("VizdoomBasic-v1", seed=0)
    assert env.action_space.n == 7  # none, 3 single buttons, 3 pairs
    env.reset()
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert info["episode_return"] == pytest.approx(total) and info["episode_length"] == steps
    env.close()


def test_rgb_and_explicit_actions():
    env = make_env("VizdoomBasic-v1", seed=0, grayscale=False, actions=[["ATTACK"], ["MOVE_LEFT", "ATTACK"]])
    obs, _ = env.reset()
    assert obs.shape == (12, 84, 84) and env.action_space.n == 2
    env.close()
    with pytest.raises(ConfigError, match="not on this game's pad"):
        make_env("VizdoomBasic-v1", actions=[["JUMP"]])


def test_unknown_doom_id():
    with pytest.raises(EnvironmentNotAvailable, match="Did you mean 'VizdoomBasic-v1'"):
        check_id("VizdoomBasik-v1")


def test_the_time_limit_is_a_truncation_not_a_terminal_state():
    """Basic ends after 300 tics (75 steps with frame skip 4) unless the monster dies; the
    player cannot die there, so an end at the limit is truncated, not terminated."""
    env = make_env("VizdoomBasic-v1", seed=0, actions=[["MOVE_LEFT"], ["MOVE_RIGHT"]])  # never shoots
    env.reset()
    steps = 0
    while True:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if terminated or truncated:
            break
    assert truncated and not terminated and steps == 75
    env.close()
