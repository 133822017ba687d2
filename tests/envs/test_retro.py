import gzip
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env

from conftest import assert_clean_error, distrl_here
from distrl.envs import check_id, make_env
from distrl.envs.retro import SONIC_ACTIONS, ProgressOnly, check_scenario, check_state, default_actions
from distrl.errors import ConfigError, EnvironmentNotAvailable

pytest.importorskip("stable_retro")

AIRSTRIKER = "retro/Airstriker-Genesis-v0"
CONFIGS = Path(__file__).resolve().parent.parent.parent / "configs" / "tutorials"


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
        assert env.unwrapped._process.poll() is not None  # the child has exited


# A user's script with no `if __name__ == "__main__":` guard. Each emulator runs in a child
# process; a child that re-ran this script would build emulators of its own, without end.
SCRIPT = """
import psutil
from distrl.envs import make_env

envs = [make_env("retro/Airstriker-Genesis-v0", seed=s) for s in range(2)]
for env in envs:
    env.reset()
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
children = len(psutil.Process().children(recursive=True))
for env in envs:
    env.close()
print("emulators", children, "after close", len(psutil.Process().children(recursive=True)), obs.shape)
"""


@pytest.mark.parametrize("how", ["file", "stdin"])
def test_a_script_without_a_main_guard_runs_emulators_and_leaves_none(tmp_path, how):
    script = tmp_path / "play.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script)] if how == "file" else [sys.executable, "-"]
    result = subprocess.run(
        command,
        input=SCRIPT if how == "stdin" else None,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "emulators 2 after close 0 (4, 84, 84)" in result.stdout, result.stdout


def test_a_missing_rom_names_the_import_command():
    with pytest.raises(EnvironmentNotAvailable, match=r"python -m stable_retro.import DIR"):
        make_env("retro/SonicTheHedgehog-Genesis-v0", state="GreenHillZone.Act1")
    with pytest.raises(EnvironmentNotAvailable, match="Did you mean 'retro/SonicTheHedgehog-Genesis-v0'"):
        check_id("retro/SonicTheHedgehg-Genesis-v0")


def test_a_list_of_start_states_draws_one_per_episode(tmp_path):
    """The Sonic row's option, checked on Airstriker with two states that look different: the
    game's own Level1 and a save taken 150 steps into play."""
    env = make_env(AIRSTRIKER, seed=0, subprocess=False, frame_stack=1)
    env.reset(seed=0)
    for _ in range(150):
        env.step(1)
    later = tmp_path / "later.state"
    with gzip.open(later, "wb") as handle:
        handle.write(env.unwrapped.em.get_state())
    env.close()

    env = make_env(AIRSTRIKER, seed=0, subprocess=False, frame_stack=1, state=["Level1", str(later)])
    draws: dict[str, list[np.ndarray]] = {}
    order = []
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        draws.setdefault(info["start_state"], []).append(obs)
        order.append(info["start_state"])
    assert set(draws) == {"Level1", str(later)}
    for frames in draws.values():  # a state starts the same every time
        assert all(np.array_equal(frame, frames[0]) for frame in frames)
    assert not np.array_equal(draws["Level1"][0], draws[str(later)][0])
    assert [env.reset(seed=seed)[1]["start_state"] for seed in range(12)] == order  # a seed replays its draw
    env.close()

    child = make_env(AIRSTRIKER, seed=0, state=["Level1", str(later)])  # the default: in a child process
    assert child.reset(seed=3)[1]["start_state"] == order[3]
    child.close()

    with pytest.raises(EnvironmentNotAvailable, match=r"has no state 'Level9'.*Level1"):
        make_env(AIRSTRIKER, state=["Level1", "Level9"])
    with pytest.raises(EnvironmentNotAvailable, match="list of them"):
        make_env(AIRSTRIKER, state=[])
    with pytest.raises(EnvironmentNotAvailable, match=r"has no scenario 'contest'.*scenario"):
        make_env(AIRSTRIKER, scenario="contest")


def test_cli_without_the_sonic_rom_exits_with_the_instructions(tmp_path):
    result = distrl_here("train", "--env", "retro/SonicTheHedgehog-Genesis-v0", "--out", str(tmp_path / "r"))
    assert_clean_error(result)
    assert "python -m stable_retro.import DIR" in result.stderr and "SonicTheHedgehog" in result.stderr


@pytest.mark.parametrize("config", ["mario_a2c.yaml", "sonic_a3c.yaml"])
def test_the_rom_configs_without_their_rom_exit_with_the_instructions(config, tmp_path):
    result = distrl_here("train", "--config", str(CONFIGS / config), "--out", str(tmp_path / "r"))
    assert_clean_error(result)
    assert "python -m stable_retro.import DIR" in result.stderr


def test_the_sonic_config_names_states_and_a_scenario_the_game_has():
    """Checked against stable-retro's integration files, which ship without the ROM: a user
    who imports the ROM is not stopped by a misspelt act."""
    options = yaml.safe_load((CONFIGS / "sonic_a3c.yaml").read_text())["env"]["options"]
    game = "SonicTheHedgehog-Genesis-v0"
    check_state(game, options["state"])
    check_scenario(game, options["scenario"])
    assert len(set(options["state"])) == 13
    with pytest.raises(EnvironmentNotAvailable, match="has no state 'GreenHillZone.Act4'"):
        check_state(game, [*options["state"], "GreenHillZone.Act4"])


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


def test_the_pad_itself_as_a_multi_binary_action_never_presses_the_system_buttons():
    env = make_env(AIRSTRIKER, seed=0, actions="buttons")  # through the emulator's own process
    pad = ["B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z"]
    assert env.action_space == gym.spaces.MultiBinary(len(pad) - 2)
    env.reset()
    for _ in range(3):
        obs, *_ = env.step(np.ones(len(pad) - 2, dtype=np.int64))
    assert obs.shape == (4, 84, 84)
    env.close()
    local = make_env(AIRSTRIKER, seed=0, subprocess=False, actions="buttons")
    wrapper = local
    while type(wrapper).__name__ != "PlayingButtons":
        wrapper = wrapper.env
    pressed = wrapper.action(np.ones(len(pad) - 2, dtype=np.int64))
    assert [pad[i] for i in np.flatnonzero(pressed)] == [b for b in pad if b not in ("MODE", "START")]
    local.close()
    with pytest.raises(ConfigError, match="'buttons'"):
        make_env(AIRSTRIKER, actions="pad")
