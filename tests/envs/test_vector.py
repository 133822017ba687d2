"""The batched envs a rollout worker drives (``distrl/envs/vector.py``), on real emulators:
ale-py's AtariVectorEnv must keep distrl's Atari semantics (game scores as returns, a lost
life as a terminal step without a reset, time limits with their last observation), and the
Python loop must give what the single envs give."""

import numpy as np
import pytest

from distrl.envs import make_env
from distrl.envs.atari import batched_game as atari_game
from distrl.envs.vector import AtariBatch, EnvLoop, make_vector_env
from distrl.errors import ConfigError


def test_ale_ids_map_to_rom_names_and_only_v5_ids_go_native():
    assert atari_game("ALE/Pong-v5") == "pong"
    assert atari_game("ALE/SpaceInvaders-v5") == "space_invaders"
    assert atari_game("PongNoFrameskip-v4") is None
    assert isinstance(make_vector_env("CartPole-v1", 2, 0, {}), EnvLoop)
    with pytest.raises(ConfigError, match="no native batched environment"):
        make_vector_env("CartPole-v1", 2, 0, {}, vectorize="native")


def play(envs, steps: int, seed: int = 0):
    """Random play; every step's arrays and the episodes reported."""
    rng = np.random.default_rng(seed)
    obs = envs.reset()
    trace = []
    for _ in range(steps):
        actions = rng.integers(0, envs.action_space.n, envs.num_envs)
        step = envs.step(actions)
        trace.append((obs, step))
        obs = step.obs
    return trace


def test_loop_reports_what_the_single_envs_report():
    """EnvLoop is the slow, obvious reference: the same seeds and actions through make_env
    envs one by one give the same observations, rewards, flags and episode returns."""
    K, T = 3, 120
    trace = play(EnvLoop("CartPole-v1", K, 7, {}), T)
    singles = [make_env("CartPole-v1", seed=7 + k) for k in range(K)]
    obs = np.stack([env.reset()[0] for env in singles])
    rng = np.random.default_rng(0)
    returns = []
    for batch_obs, step in trace:
        np.testing.assert_array_equal(batch_obs, obs)
        actions = rng.integers(0, 2, K)
        for k, env in enumerate(singles):
            o, r, term, trunc, info = env.step(int(actions[k]))
            assert (r, term, trunc) == (step.rewards[k], step.terminated[k], step.truncated[k])
            if term or trunc:
                returns.append(info["episode_return"])
                o, _ = env.reset()
            obs[k] = o
    assert sorted(returns) == sorted(r for _, step in trace for r in step.episode_returns)


def test_atari_batch_keeps_game_scores_and_lives():
    """Breakout, life loss terminal: each of the 5 lives ends with a terminal step, the game
    plays on after the first 4, and the return reported at game over is the whole game's
    score (the sum of its rewards over all its steps), as distrl's own wrappers report it."""
    pytest.importorskip("ale_py")
    envs = make_vector_env("ALE/Breakout-v5", 1, 3, {})
    assert isinstance(envs, AtariBatch)
    reference = make_env("ALE/Breakout-v5", seed=3)
    assert envs.observation_space.shape == reference.observation_space.shape == (4, 84, 84)
    assert envs.observation_space.dtype == np.uint8 and envs.action_space.n == reference.action_space.n
    trace = play(envs, 1500)
    envs.close()

    score, length, terminals, games = 0.0, 0, 0, 0
    for _, step in trace:
        assert not step.truncated[0]
        score += float(step.rewards[0])
        length += 1
        terminals += bool(step.terminated[0])
        if step.episode_returns:
            assert step.terminated[0] and terminals == 5, "a game over after other than 5 lost lives"
            assert step.episode_returns == [score] and step.episode_lengths == [length]
            score, length, terminals, games = 0.0, 0, 0, games + 1
    assert games >= 2, "fewer than two Breakout games ended in 1,500 random steps"


def test_atari_batch_game_return_is_the_sum_of_its_rewards():
    pytest.importorskip("ale_py")
    envs = make_vector_env("ALE/Pong-v5", 1, 5, {"frame_skip": 8})
    trace = play(envs, 1200)
    envs.close()
    running, lengths = 0.0, 0
    checked = 0
    for _, step in trace:
        running += float(step.rewards[0])
        lengths += 1
        if step.episode_returns:
            assert step.episode_returns == [running] and step.episode_lengths == [lengths]
            assert step.terminated[0]
            running, lengths = 0.0, 0
            checked += 1
    assert checked >= 1, "no Pong game ended in 1,200 steps of 8 frames"


def test_atari_batch_time_limit_hands_over_the_last_observation():
    pytest.importorskip("ale_py")
    envs = make_vector_env("ALE/Pong-v5", 2, 1, {"max_episode_frames": 400})
    trace = play(envs, 130)
    envs.close()
    cut = [(t, step) for t, (_, step) in enumerate(trace) if step.truncated.any()]
    assert cut, "no episode was cut at 400 frames"
    t, step = cut[0]
    for k in np.flatnonzero(step.truncated & ~step.terminated):
        final = step.final_obs[int(k)]
        assert final.shape == (4, 84, 84)
        assert not np.array_equal(final, step.obs[k])  # the next obs starts a new game
    assert len(step.episode_returns) == int(step.truncated.sum())


def test_atari_downscale_max_pools_what_twice_the_size_shows_on_both_paths():
    """downscale=max at 22 pixels: the native batch's frames are max_pool2 of the native
    batch's 44-pixel frames for the same seed and actions (the emulator is deterministic
    without sticky actions), and the single-env path gives the same shapes."""
    pytest.importorskip("ale_py")
    from distrl.envs.wrappers import max_pool2

    base = {"repeat_action_probability": 0.0, "frame_stack": 2}
    pooled = play(make_vector_env("ALE/Pong-v5", 2, 4, {**base, "screen_size": 22, "downscale": "max"}), 60)
    large = play(make_vector_env("ALE/Pong-v5", 2, 4, {**base, "screen_size": 44}), 60)
    for (obs, step), (big_obs, big_step) in zip(pooled, large):
        np.testing.assert_array_equal(obs, max_pool2(big_obs))
        np.testing.assert_array_equal(step.obs, max_pool2(big_step.obs))
    single = make_env("ALE/Pong-v5", seed=4, **base, screen_size=22, downscale="max")
    assert single.observation_space.shape == single.reset()[0].shape == (2, 22, 22)
    single.close()
