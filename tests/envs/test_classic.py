import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distrl.envs import check_id, family_of, make_env
from distrl.errors import ConfigError, EnvironmentNotAvailable


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCar-v0", "FrozenLake-v1", "Acrobot-v1"])
def test_classic_envs_pass_the_gymnasium_checker(env_id):
    env = make_env(env_id, seed=0)
    check_env(env, skip_render_check=True)
    assert family_of(env_id).name == "classic"


def test_discrete_observations_become_one_hot():
    env = make_env("FrozenLake-v1", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (16,) and obs.dtype == np.float32 and obs.sum() == 1.0
    raw = make_env("FrozenLake-v1", seed=0, one_hot=False)
    assert isinstance(raw.observation_space, gym.spaces.Discrete)


def test_gymnasium_options_pass_through():
    env = make_env("FrozenLake-v1", seed=0, map_name="8x8", is_slippery=False)
    assert env.observation_space.shape == (64,)


def test_episode_stats_report_the_real_return():
    env = make_env("CartPole-v1", seed=3)
    env.reset()
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert info["episode_return"] == total and info["episode_length"] == steps


def test_same_seed_same_episode():
    def rollout(seed):
        env = make_env("CartPole-v1", seed=seed)
        obs, _ = env.reset()
        return [obs] + [env.step(0)[0] for _ in range(5)]

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5)[0], rollout(6)[0])


def test_unknown_ids_and_options_get_clear_errors():
    with pytest.raises(EnvironmentNotAvailable, match="Did you mean 'CartPole-v1'"):
        check_id("CartPol-v1")
    with pytest.raises(EnvironmentNotAvailable, match="Unknown environment id"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(EnvironmentNotAvailable, match="does not accept the options"):
        make_env("CartPole-v1", no_such_option=1)
    with pytest.raises(ConfigError, match="Did you mean 'frame_skip'"):
        make_env("ALE/Pong-v5", frameskip=2)


def test_hide_zeroes_the_chosen_entries_and_nothing_else():
    plain, hidden = make_env("CartPole-v1", seed=3), make_env("CartPole-v1", seed=3, hide=[1, 3])
    first, masked = plain.reset()[0], hidden.reset()[0]
    for _ in range(5):
        assert masked[1] == 0 and masked[3] == 0 and first[1] != 0
        np.testing.assert_array_equal(masked[[0, 2]], first[[0, 2]])
        first, masked = plain.step(1)[0], hidden.step(1)[0]
    with pytest.raises(ConfigError, match="indices must be in"):
        make_env("CartPole-v1", hide=[4])
