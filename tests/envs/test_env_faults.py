"""An env copy that raises, or whose emulator process dies, is built again and the worker
carries on; the episode it was in is cut and not reported, and env_restarts counts it."""

from __future__ import annotations

import os
import signal
import sys

import gymnasium as gym
import numpy as np
import pytest

from conftest import assert_clean_error, read_progress, run_distrl
from distrl.envs.vector import EnvLoop

FLAKY = '''
import gymnasium as gym
import numpy as np


class Flaky(gym.Env):
    """Pays 1 a step for 20 steps; raises on the given steps of its life (counted over resets)."""

    def __init__(self, fail_at=(7,), always=False, metrics=None):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.fail_at, self.always, self.life = set(fail_at), always, 0
        self.metrics = metrics  # info["episode_metrics"] at each episode's end

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if self.always:
            raise RuntimeError("this env cannot even start")
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.life += 1
        if self.life in self.fail_at:
            raise RuntimeError(f"the env broke at step {self.life} of its life")
        self.t += 1
        info = {"episode_metrics": self.metrics} if self.metrics is not None and self.t >= 20 else {}
        return np.full(2, self.t / 20, np.float32), 1.0, False, self.t >= 20, info


BUILT = 0


def make(fail_every=0, sound_after=0, **options):
    """``fail_every``: fails now and then, on every copy, rebuilt ones too. ``sound_after``:
    copies built after the first ``sound_after`` never fail."""
    global BUILT
    BUILT += 1
    if sound_after and BUILT > sound_after:
        return Flaky(fail_at=(), **options)
    if fail_every:
        return Flaky(fail_at=range(fail_every, 10**6, fail_every), **options)
    return Flaky(**options)
'''


@pytest.fixture
def flaky(tmp_path, monkeypatch) -> str:
    (tmp_path / "flakyenvs.py").write_text(FLAKY)
    monkeypatch.delitem(sys.modules, "flakyenvs", raising=False)  # a fresh count of copies built
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    if "Flaky-v0" not in gym.registry:
        gym.register("Flaky-v0", entry_point="flakyenvs:make")
    return str(tmp_path)


def test_a_copy_that_raises_is_rebuilt_and_its_episode_cut(flaky):
    loop = EnvLoop("Flaky-v0", 2, seed=0, options={"sound_after": 2})
    loop.reset()
    steps = [loop.step(np.zeros(2, np.int64)) for _ in range(30)]
    # Both copies fail at the 7th step of their lives; the copies built in their place do not.
    failed = [t for t, step in enumerate(steps) if step.env_restarts]
    assert failed == [6] and steps[6].env_restarts == 2 and loop.restarts == 2
    assert steps[6].truncated.all() and not steps[6].terminated.any() and (steps[6].rewards == 0).all()
    assert set(steps[6].final_obs) == {0, 1}
    # The cut episodes are not reported; the rebuilt copies' first full episodes (20 steps) are.
    assert all(not step.episode_returns for step in steps[:26])
    assert steps[26].episode_returns == [20.0, 20.0]
    loop.close()


def test_a_copy_that_keeps_failing_raises(flaky):
    with pytest.raises(RuntimeError, match="cannot even start"):
        EnvLoop("Flaky-v0", 1, seed=0, options={"always": True}).reset()


def test_a_crashed_emulator_process_is_replaced():
    pytest.importorskip("stable_retro")
    loop = EnvLoop("retro/Airstriker-Genesis-v0", 2, seed=0, options={})
    loop.reset()
    victim = loop.envs[0].unwrapped._process
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    actions = np.zeros((2, loop.action_space.shape[0]), np.int64) if loop.action_space.shape else np.zeros(2, np.int64)
    step = loop.step(actions)
    assert step.env_restarts == 1 and step.truncated[0] and 0 in step.final_obs
    assert loop.envs[0].unwrapped._process.pid != victim.pid
    for _ in range(5):
        step = loop.step(actions)
        assert step.obs.shape == (2, 4, 84, 84) and step.env_restarts == 0
    loop.close()


@pytest.mark.slow
def test_a_run_goes_on_through_env_failures(flaky, tmp_path):
    out = tmp_path / "run"
    result = run_distrl(
        "train", "--num-workers", "2", "--stop-env-steps", "4000", "--out", str(out),
        "--set", "env.id=Flaky-v0", "env.entry_point=flakyenvs:make", "env.options.fail_every=50",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_progress(out)[-1]
    # Every copy fails once per 50 steps of its life: about 4000 / 50 rebuilds in all.
    assert last["env_restarts"] >= 40 and last["worker_restarts"] == 0, last
    assert last["episodes"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ray", "serial"])
def test_episode_metrics_that_break_the_convention_stop_the_run_at_once(flaky, tmp_path, mode):
    """Every episode would send them again: one paragraph and exit 2 at the first, not five
    worker replacements first; the same in one process (serial mode), where the worker's
    exception reaches the driver as it does from Ray."""
    out = tmp_path / "run"
    result = run_distrl(
        "train", "--num-workers", "2", "--stop-env-steps", "100000", "--out", str(out),
        "--set", "env.id=Flaky-v0", "env.entry_point=flakyenvs:make", "env.options.fail_at=[]",
        "env.options.metrics.score=high", f"runtime.mode={mode}",
    )  # fmt: skip
    assert_clean_error(result, 2)
    assert "episode metric 'score' as a str ('high')" in result.stderr, result.stderr
    assert "replaced" not in result.stdout, result.stdout
