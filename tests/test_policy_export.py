"""`distrl.Policy` (a checkpoint's policy in a Python program) and `distrl export` (the greedy
policy as a TorchScript or ONNX file): on real checkpoint files, real envs and the real
runtimes (torch.jit.load, onnxruntime).

Most checkpoints here hold untrained networks: the equivalences do not depend on what the
weights learned, and a fresh network is written in milliseconds. One test trains CartPole
through the command line and plays the trained policy every way it can be played."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import USER_PACKAGE, run_distrl
from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.cli import build_parser
from distrl.config import resolve
from distrl.envs import custom, make_env
from distrl.errors import DistrlError
from distrl.evaluate import evaluate
from distrl.export import ExportError, cmd_export, export
from distrl.models import build_model
from distrl.policy import Policy, eval_options

# name -> the run's config (untrained checkpoints); one per kind of network and action head.
CASES: dict[str, dict[str, Any]] = {
    "cartpole-ppo": {"algo": "ppo", "env": {"id": "CartPole-v1"}},  # MLP, Discrete
    "pendulum-ppo": {"algo": "ppo", "env": {"id": "Pendulum-v1"}},  # Box, clipped into the bounds
    "pendulum-squash": {
        "algo": "ppo",
        "env": {"id": "Pendulum-v1"},
        # A wide Gaussian whose mean leaves the bounds: the squash is what keeps it inside.
        "model": {"action_bounds": "squash", "log_std": "state"},
    },
    "catch-dqn": {"algo": "dqn", "env": {"id": "distrl/Catch-v0"}},  # uint8 frames, CNN, Q-network
    "copybits-binary": {
        "algo": "ppo",
        "env": {"id": "CopyBits-v0", "imports": ["mygames.envs"], "options": {"action": "binary"}},
    },  # MultiBinary
    "copybits-multidiscrete": {
        "algo": "ppo",
        "env": {"id": "CopyBits-v0", "imports": ["mygames.envs"], "options": {"action": "discrete"}},
    },  # MultiDiscrete
    "cartpole-lstm": {"algo": "ppo", "env": {"id": "CartPole-v1"}, "model": {"recurrent": "lstm"}},
}
FEED_FORWARD = [name for name, user in CASES.items() if "recurrent" not in user.get("model", {})]
SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


@pytest.fixture(autouse=True)
def user_package(monkeypatch):
    """examples/mygames (CopyBits) importable, as a user's package on PYTHONPATH would be."""
    monkeypatch.syspath_prepend(str(USER_PACKAGE.parent))


def untrained_checkpoint(folder: Path, user: dict[str, Any], seed: int = 0) -> Path:
    """A checkpoint as the trainer writes one (model weights, config), of a fresh network."""
    config = resolve(user)
    custom.prepare(config.env)
    env = make_env(config.env.id, seed=0, **config.env.options)
    torch.manual_seed(seed)
    model = build_model(config.model, env.observation_space, env.action_space, ALGORITHMS[config.algo].model_head)
    env.close()
    if "pendulum" in config.env.id.lower():
        with torch.no_grad():  # means of order 1, so that the clip and the squash both bite
            model.policy_head.mean.weight.mul_(1000)
    state = {"model": model.state_dict(), "version": 0, "updates": 0}
    return checkpoint.save(folder / "checkpoints", 0, state, config.to_yaml(), keep=1)


def recorded_observations(policy: Policy, steps: int = 48, seed: int = 1) -> np.ndarray:
    """Observations as the env gives them, from random play (which visits more states than an
    untrained policy would), episodes cut and restarted as they end."""
    assert policy.config is not None
    env = make_env(policy.config.env.id, seed=seed, **policy.config.env.options)
    env.action_space.seed(seed)
    observations = []
    obs, _ = env.reset()
    for _ in range(steps):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(observations)


def same_actions(got: np.ndarray, expected: np.ndarray, space: gym.Space) -> bool:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False
    if isinstance(space, gym.spaces.Box):
        return np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    return np.array_equal(got, expected)


def need(fmt: str) -> None:
    """ONNX needs the export extra (pip install 'distrl[export]'); TorchScript only torch."""
    if fmt == "onnx":
        for package in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(package)


class ExportedFile:
    """An exported policy loaded with its own runtime, called like the graph it is."""

    def __init__(self, path: Path, fmt: str):
        self.fmt = fmt
        if fmt == "torchscript":
            self.module = torch.jit.load(str(path))
        else:
            import onnxruntime

            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        if self.fmt == "torchscript":
            with torch.no_grad():
                out = self.module(*(torch.from_numpy(np.ascontiguousarray(x)) for x in inputs))
            return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]
        names = [i.name for i in self.session.get_inputs()]
        return self.session.run(None, dict(zip(names, inputs)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(USER_PACKAGE.parent))
        return {name: untrained_checkpoint(root / name, user) for name, user in CASES.items()}


@pytest.mark.parametrize("name", FEED_FORWARD)
def test_a_batch_gets_the_actions_of_its_rows_one_at_a_time(checkpoints, name):
    policy = Policy.load(checkpoints[name].parent.parent)  # the run folder: its newest checkpoint
    assert policy.checkpoint == checkpoints[name] and policy.config is not None
    assert policy.config.to_dict() == resolve(CASES[name]).to_dict()
    assert not policy.model.training and not policy.recurrent
    observations = recorded_observations(policy)
    batch = policy.act(observations)
    singles = [policy.act(obs) for obs in observations]
    space = policy.action_space
    assert isinstance(batch, np.ndarray) and len(batch) == len(observations)
    if isinstance(space, gym.spaces.Discrete):
        assert all(type(action) is int for action in singles)
    else:
        assert all(isinstance(action, np.ndarray) and action.shape == space.shape for action in singles)
    assert same_actions(np.stack(singles), batch, space)
    assert all(space.contains(np.asarray(action, dtype=space.dtype)) for action in singles)
    if isinstance(space, gym.spaces.Box):
        # The clip or squash really ran: the raw means of these networks leave the bounds.
        means = policy.model(torch.from_numpy(observations))[0][:, :1].detach().numpy()
        assert np.abs(means).max() > 2.0 and np.abs(batch).max() <= 2.0
    # A list and a float64 array are observations too: cast to the space's dtype.
    assert same_actions(policy.act(observations.tolist()), batch, space)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("name", list(CASES))
def test_the_exported_file_gives_the_policys_greedy_actions(checkpoints, tmp_path, name, fmt):
    need(fmt)
    out = tmp_path / "files" / f"policy{SUFFIX[fmt]}"  # a folder that does not exist yet
    assert export(checkpoints[name], fmt, out) == out
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.name + ".json"]  # no staging left
    policy = Policy.load(checkpoints[name])
    observations = recorded_observations(policy)
    run = ExportedFile(out, fmt)
    space = policy.action_space
    described = json.loads((out.parent / (out.name + ".json")).read_text())
    shape = list(policy.observation_space.shape)
    assert described["inputs"][0] == {"name": "obs", "shape": ["N", *shape], "dtype": str(observations.dtype)}
    assert described["env"]["id"] == CASES[name]["env"]["id"] and described["format"] == fmt
    assert described["checkpoint"] == str(checkpoints[name].resolve()) and described["algo"] == CASES[name]["algo"]
    assert described["recurrent"] == policy.recurrent

    if not policy.recurrent:
        (actions,) = run(observations)
        assert same_actions(actions, policy.act(observations), space)
        assert actions.dtype == (np.float32 if isinstance(space, gym.spaces.Box) else np.int64)
        (one,) = run(observations[:1])  # any batch size, one included
        assert same_actions(one[0], policy.act(observations[0]), space)
        return

    # A recurrent policy: the state goes in and out; zeros start the episode. Four envs side
    # by side, stepped through the recorded observations, the file and the Policy in step.
    assert [i["name"] for i in described["inputs"]] == ["obs", "state"]
    steps = observations.reshape(-1, 4, *shape)
    state = np.zeros((4, *policy.initial_state().shape), dtype=np.float32)
    memory = None
    for obs in steps:
        actions, state = run(obs, state)
        expected, memory = policy.act(obs, memory)
        assert np.array_equal(actions, expected)
        np.testing.assert_allclose(state, memory, rtol=1e-5, atol=1e-6)
    assert np.abs(state).max() > 0.01  # the memory was in use


def test_a_recurrent_policy_carries_its_state(checkpoints):
    policy = Policy.load(checkpoints["cartpole-lstm"])
    assert policy.recurrent
    observations = recorded_observations(policy, steps=24)
    # One observation: (int, state [S, H]): the LSTM's h and c, for the policy's core and the
    # value's (an MLP trunk each); None and zeros both start an episode.
    action, state = policy.act(observations[0])
    assert type(action) is int and state.shape == (4, 128) == policy.initial_state().shape
    assert policy.act(observations[0], policy.initial_state())[1].tolist() == state.tolist()
    # A batch of 3 envs side by side steps as its rows one at a time, over several steps.
    steps = observations.reshape(8, 3, -1)
    batch_state, row_states = None, [None, None, None]
    for obs in steps:
        batch_actions, batch_state = policy.act(obs, batch_state)
        for row in range(3):
            action, row_states[row] = policy.act(obs[row], row_states[row])
            assert action == batch_actions[row]
            np.testing.assert_allclose(row_states[row], batch_state[row], rtol=1e-5, atol=1e-6)
    # The state is memory: the same observation after other histories may get other states.
    assert not np.allclose(batch_state[0], policy.act(steps[-1][0])[1])
    with pytest.raises(
        DistrlError, match=r"state .* has shape \(3, 4, 128\).*for one observation has shape \(4, 128\)"
    ):
        policy.act(observations[0], batch_state)


def test_a_feed_forward_policy_refuses_a_state_and_any_policy_a_wrong_shape(checkpoints):
    policy = Policy.load(checkpoints["cartpole-ppo"])
    obs = recorded_observations(policy, steps=2)
    with pytest.raises(DistrlError, match="has no memory"):
        policy.act(obs[0], np.zeros((2, 128), np.float32))
    with pytest.raises(DistrlError, match="has no memory"):
        policy.initial_state()
    with pytest.raises(DistrlError, match=r"one observation of shape \(4,\) or a batch of shape \(N, 4\).*\(4, 2\)"):
        policy.act(obs.T)
    with pytest.raises(DistrlError, match=r"shape \(1, 2, 4\)"):
        policy.act(obs[None])


def test_sampling_follows_torchs_seed(checkpoints):
    policy = Policy.load(checkpoints["pendulum-ppo"])
    observations = recorded_observations(policy, steps=16)
    torch.manual_seed(5)
    first = policy.act(observations, greedy=False)
    torch.manual_seed(5)
    again = policy.act(observations, greedy=False)
    assert np.array_equal(first, again)
    assert not np.allclose(first, policy.act(observations))  # greedy=True (the default): the means


def test_export_refuses_what_it_cannot_write(checkpoints, tmp_path, monkeypatch, capsys):
    ckpt = checkpoints["cartpole-ppo"]
    with pytest.raises(ExportError, match="Unknown export format 'tflite'"):
        export(ckpt, "tflite", tmp_path / "policy.tflite")
    with pytest.raises(ExportError, match="is a folder"):
        export(ckpt, "onnx", tmp_path)
    with pytest.raises(ExportError, match="Which format"):
        cmd_export(build_parser().parse_args(["export", str(ckpt), "-o", str(tmp_path / "policy.bin")]))
    with pytest.raises(DistrlError, match="No checkpoint"):
        export(tmp_path / "nothing-here", "torchscript", tmp_path / "policy.pt")
    # The exporter's packages missing (None in sys.modules: the import fails as if uninstalled).
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"needs onnxscript.*pip install 'distrl\[export\]'"):
        export(ckpt, "onnx", tmp_path / "policy.onnx")
    assert list(tmp_path.iterdir()) == []  # nothing written by any of them


def play(act, env_id: str, seed: int, options: dict[str, Any], episodes: int) -> list[float]:
    """Greedy episodes as `distrl eval --greedy --seed S` plays them: one env made with the
    seed (it seeds the first reset), the family's evaluation options, and the returns that the
    env's episode bookkeeping reports."""
    env = make_env(env_id, seed=seed, **options)
    returns: list[float] = []
    obs, _ = env.reset()
    while len(returns) < episodes:
        obs, _, terminated, truncated, info = env.step(act(obs))
        if "episode_return" in info:
            returns.append(float(info["episode_return"]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return returns


@pytest.mark.slow
def test_a_trained_policy_plays_as_distrl_eval_does_from_python_and_from_its_exported_files(trained_cartpole, tmp_path):
    """On the PPO CartPole run that conftest.py trains (through distrl.train)."""
    need("onnx")
    run = trained_cartpole[0].run_dir
    seed = 11
    expected, folder = evaluate(run, 3, greedy=True, seed=seed)
    policy = Policy.load(run)
    assert policy.checkpoint == folder
    assert policy.config is not None
    options = eval_options(policy.config)
    assert play(policy.act, "CartPole-v1", seed, options, 3) == expected
    assert np.mean(expected) > 30  # it learned something: an untrained policy scores about 10

    observations = recorded_observations(policy, steps=200)
    assert np.array_equal(policy.act(observations), [policy.act(obs) for obs in observations])
    for fmt in ("torchscript", "onnx"):
        out = tmp_path / f"cartpole{SUFFIX[fmt]}"
        exported_by = run_distrl("export", str(run), "--format", fmt, "-o", str(out))
        assert exported_by.returncode == 0, exported_by.stderr[-3000:]
        exported = ExportedFile(out, fmt)
        assert np.array_equal(exported(observations)[0], policy.act(observations))
        greedy = lambda obs, exported=exported: int(exported(obs[None])[0][0])  # noqa: E731
        assert play(greedy, "CartPole-v1", seed, options, 3) == expected
