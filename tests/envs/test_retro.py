import os

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from conftest import assert_clean_error, run_distrl
from distrl.envs import check_id, make_env
from distrl.envs.retro import SONIC_ACTIONS, ProgressOnly, default_actions
from distrl.errors import EnvironmentNotAvailable

pytest.importorskip("stable_retro")

AIRSTRIKER = "retro/Airstriker-Genesis-v0"


def test_airstriker_passes_the_checker_with_uint8_frame_stacks():
    env = make_env(AIRSTRIKER, seed=0)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    env.close()


def test_several_copies_in_one_process_each_run_their_own_emulator():
    """stable-retro refuses a second emulator in one process; make_env puts each copy in a
    child process, so a worker can hold several."""
    envs = [make_env(AIRSTRIKER, seed=s) for s in range(3)]
    pids = {env.unwrapped._process.pid for env in envs}
    assert len(pids) == 3 and os.getpid() not in pids
    for env in envs:
        env.reset()
        for _ in range(10):
            obs, *_ = env.step(env.action_space.sample())
        assert obs.shape == (4, 84, 84)
    for env in envs:
        env.close()
        assert not env.unwrapped._process.is_alive()


def test_a_missing_rom_names_the_import_command():
    with pytest.raises(EnvironmentNotAvailable, match=r"python -m stable_retro.import DIR"):
        make_env("retro/SonicTheHedgehog-Genesis-v0", state="GreenHillZone.Act1")
    with pytest.raises(EnvironmentNotAvailable, match="Did you mean 'retro/SonicTheHedgehog-Genesis-v0'"):
        check_id("retro/SonicTheHedgehg-Genesis-v0")


def test_cli_without_the_sonic_rom_exits_with_the_instructions(tmp_path):
    result = run_distrl("train", "--env", "retro/SonicTheHedgehog-Genesis-v0", "--out", str(tmp_path / "r"))
    assert_clean_error(result)
    assert "python -m stable_retro.import DIR" in result.stderr and "SonicTheHedgehog" in result.stderr


def test_action_sets():
    genesis = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]
    assert default_actions("SonicTheHedgehog-Genesis-v0", genesis) == SONIC_ACTIONS
    assert len(SONIC_ACTIONS) == 7
    nes = ["B", None, "SELECT", "START", "UP", "DOWN", "LEFT", "RIGHT", "A"]
    mario = default_actions("SuperMarioBros-Nes-v0", nes)
    assert ["RIGHT", "A"] in mario and all(b in nes for combo in mario for b in combo)
    generic = default_actions("Airstriker-Genesis-v0", genesis)
    assert generic[0] == [] and ["START"] not in generic and ["MODE"] not in generic
    env = make_env(AIRSTRIKER, seed=0, subprocess=False, actions=[["LEFT"], ["RIGHT", "B"]])
    assert env.action_space.n == 2
    env.close()


def test_progress_only_rewards_new_ground():
    import gymnasium as gym

    class Walk(gym.Env):
        """Rewards as the x-progress deltas of a walk: +3, -2, +1, +2, -5, +6."""

        observation_space = gym.spaces.Discrete(1)
        action_space = gym.spaces.Discrete(1)
        deltas = [3, -2, 1, 2, -5, 6]

        def reset(self, *, seed=None, options=None):
            self.i = 0
            return 0, {}

        def step(self, action):
            self.i += 1
            return 0, float(self.deltas[self.i - 1]), self.i == len(self.deltas), False, {}

    env = ProgressOnly(Walk())
    env.reset()
    # Position 3, 1, 2, 4, -1, 5: best so far 3, 3, 3, 4, 4, 5 -> gains 3, 0, 0, 1, 0, 1.
    assert [env.step(0)[1] for _ in range(6)] == [3, 0, 0, 1, 0, 1]
