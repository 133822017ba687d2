"""``distrl export``: a checkpoint's greedy policy as one file that runs without distrl.

The file maps a batch of observations, exactly as the env gives them (``[N, *obs_shape]``,
float32 or uint8, the preprocessing already done by the env), to the greedy env actions:
the same actions ``Policy.act(obs, greedy=True)`` returns, bounds applied. Two formats:

- ``torchscript``: ``torch.jit.trace``, for programs that have torch (C++ too, with libtorch).
- ``onnx``: for onnxruntime and the other ONNX runtimes, without torch. torch's exporter
  (``torch.onnx.export(dynamo=True)``, the default and the only one kept up) needs
  ``onnxscript`` and ``onnx``; the file is checked with ``onnxruntime`` before it is kept.
  These come with ``pip install 'distrl[export]'``.

Next to ``FILE`` goes ``FILE.json``: what to feed the file and what it returns (shapes,
dtypes, the action space, the env id and options, the checkpoint), because an exported
graph carries no env and no preprocessing.

A recurrent policy exports with its state as a second input and output: ``(obs [N, ...],
state [N, S, H]) -> (actions, next_state)``. A state of zeros starts an episode (that is what
the network does at an episode start), so there is no third input for episode starts.

Only the greedy action is exported: a sampled one would need a random generator inside the
graph, whose numbers no runtime reproduces.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from distrl.envs.packed import PackedSpace
from distrl.errors import DistrlError
from distrl.models.actor_critic import ActorCritic
from distrl.models.q_network import greedy_actions as greedy_q_actions
from distrl.policy import Policy

FORMATS = ("torchscript", "onnx")
# Suffixes that name a format when --format is not given.
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript"}
EXAMPLE_ROWS = 3  # the batch traced and checked: more than one row, so no size is taken for fixed
INSTALL = "pip install 'distrl[export]'"


class ExportError(DistrlError):
    """A policy distrl cannot export as asked: an unknown format, a missing package, a file it
    cannot write."""

    exit_code = 2


class GreedyActions(nn.Module):
    """The network and the greedy choice, as one traceable module: ``obs [N, ...] -> actions``.
    The choice is the heads' own ``greedy_actions`` and ``to_env_tensor``, the methods the
    model's ``act(greedy=True)`` uses, so the file and the Python policy cannot drift apart."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.q_values = not isinstance(model, ActorCritic)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.q_values:  # DQN, Q-learning: argmax Q
            return greedy_q_actions(self.model(obs))
        assert isinstance(self.model, ActorCritic)
        params, _ = self.model(obs)
        head = self.model.policy_head
        return head.to_env_tensor(head.greedy_actions(params))


class RecurrentGreedyActions(nn.Module):
    """``(obs [N, ...], state [N, S, H]) -> (actions, next_state)``; zeros start an episode."""

    def __init__(self, model: ActorCritic):
        super().__init__()
        self.model = model

    def forward(self, obs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # No episode starts: a zero state is what an episode start gives the core (models/recurrent.py).
        no_start = torch.zeros_like(state[:, 0, 0], dtype=torch.bool)
        params, _, next_state = self.model.step(obs, state, no_start)
        assert next_state is not None
        head = self.model.policy_head
        return head.to_env_tensor(head.greedy_actions(params)), next_state


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the greedy policy of ``checkpoint`` (a run folder, a checkpoint folder or a
    state.pt) to ``out`` in format ``fmt`` (``torchscript`` or ``onnx``), and its description
    to ``out + ".json"``; returns ``out``. Nothing is left under ``out`` if it fails."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{str(out)!r} is a folder; give a file name such as {str(out / _default_name(fmt))!r}.")
    if fmt == "onnx":
        _require_onnx()
    policy = Policy.load(checkpoint)
    module = _module_of(policy)
    example = _example_inputs(policy)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".distrl-export-", dir=out.parent))
    except OSError as error:
        raise ExportError(
            f"Cannot write {str(out)!r}: {error.strerror or error}. Choose a folder you can write to."
        ) from None
    try:
        written = staging / out.name
        with torch.no_grad():
            expected = module(*example)
            if fmt == "torchscript":
                _torchscript(module, example, written)
            else:
                _onnx(module, example, written, policy.recurrent)
        _check(fmt, written, example, expected, policy.action_space)
        description = staging / "description.json"
        description.write_text(json.dumps(describe(policy, fmt, out), indent=2) + "\n")
        os.replace(written, out)
        os.replace(description, _description_path(out))
    except OSError as error:
        raise ExportError(f"Cannot write {str(out)!r}: {error.strerror or error}.") from None
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return out


def _default_name(fmt: str) -> str:
    return "policy.onnx" if fmt == "onnx" else "policy.pt"


def _description_path(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _require_onnx() -> None:
    missing = []
    for package in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ExportError(
            f"Exporting to ONNX needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed. Install them with `{INSTALL}` and run again (or export with --format torchscript)."
        )


def _module_of(policy: Policy) -> nn.Module:
    model = policy.model
    module = RecurrentGreedyActions(model) if policy.recurrent else GreedyActions(model)
    return module.eval()


def _example_inputs(policy: Policy) -> tuple[torch.Tensor, ...]:
    """A few observations of the right shape and dtype, to trace the network with and to check
    the file against it. Samples of the space, seeded; zeros for a packed Dict observation,
    whose float parts as random bytes would be NaNs and infinities."""
    space = policy.observation_space
    if isinstance(space, PackedSpace) or not isinstance(space, gym.spaces.Box):
        obs = np.zeros((EXAMPLE_ROWS, *(space.shape or ())), dtype=space.dtype)
    else:
        low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
        # Unbounded dimensions drawn from [-10, 10] (from a bound, if one side has one).
        low = np.where(np.isfinite(low), low, np.where(np.isfinite(high), high - 10, -10))
        high = np.where(np.isfinite(high), high, low + 20)
        bounded = gym.spaces.Box(low, high, space.shape, np.float64, seed=0)
        obs = np.stack([bounded.sample() for _ in range(EXAMPLE_ROWS)]).astype(space.dtype)
    inputs: tuple[torch.Tensor, ...] = (torch.from_numpy(obs),)
    if policy.recurrent:
        # A state as the network makes one: after a step from zeros, so it is not all zeros.
        inputs += (torch.from_numpy(policy.act(obs)[1]),)
    return inputs


def _torchscript(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path) -> None:
    with warnings.catch_warnings():
        # The action bounds (numpy arrays on the Gaussian head) become constants, as they should.
        warnings.filterwarnings("ignore", message="torch.as_tensor results are registered as constants")
        traced = torch.jit.trace(module, example)
    traced.save(str(path))


def _onnx(module: nn.Module, example: tuple[torch.Tensor, ...], path: Path, recurrent: bool) -> None:
    """torch's dynamo exporter, the only one torch still develops (the TorchScript-based one is
    deprecated); the batch dimension is left free."""
    batch = torch.export.Dim("batch")
    input_names = ["obs", "state"] if recurrent else ["obs"]
    output_names = ["actions", "next_state"] if recurrent else ["actions"]
    dynamic_shapes = tuple({0: batch} for _ in example)
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch's exporter, not ours
            # obs and state share the batch axis, which the exporter names once, with a warning.
            warnings.filterwarnings("ignore", message="# The axis name")
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                external_data=False,  # one file: the networks are small
                verbose=False,
            )
    except ImportError as error:  # the exporter imports onnxscript and onnx on use
        raise ExportError(f"Exporting to ONNX failed: {error}. Install the exporter with `{INSTALL}`.") from None
    finally:
        quiet.setLevel(level)


def _check(fmt: str, path: Path, example: tuple[torch.Tensor, ...], expected: Any, action_space: gym.Space) -> None:
    """Run the written file on the example batch: a file that does not give the network's own
    actions is not kept (a bug in an exporter would otherwise surface in the user's program)."""
    if fmt == "torchscript":
        with torch.no_grad():
            got = torch.jit.load(str(path))(*example)
        outputs = [o.numpy() for o in (got if isinstance(got, tuple) else (got,))]
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = {i.name: x.numpy() for i, x in zip(session.get_inputs(), example)}
        outputs = session.run(None, feed)
    wanted = [e.numpy() for e in (expected if isinstance(expected, tuple) else (expected,))]
    exact = not isinstance(action_space, gym.spaces.Box)
    for index, (got_array, want) in enumerate(zip(outputs, wanted)):
        same = got_array.shape == want.shape and (
            np.array_equal(got_array, want) if exact and index == 0 else np.allclose(got_array, want, atol=1e-5)
        )
        if not same:
            raise ExportError(
                f"The {fmt} file gives other outputs than the network it was made from (output {index}: "
                f"{got_array.ravel()[:6]} against {want.ravel()[:6]}); it was not kept. Please report this with "
                f"the versions of torch{' and onnxruntime' if fmt == 'onnx' else ''}."
            )


def describe(policy: Policy, fmt: str, out: Path) -> dict[str, Any]:
    """What a user of the exported file needs to know, as plain JSON."""
    obs_space = policy.observation_space
    obs_shape = list(obs_space.shape or ())
    actions = _action_output(policy.action_space)
    inputs = [{"name": "obs", "shape": ["N", *obs_shape], "dtype": str(np.dtype(obs_space.dtype))}]
    outputs = [{"name": "actions", **actions}]
    if policy.recurrent:
        state_shape = ["N", *policy.initial_state().shape]
        inputs.append({"name": "state", "shape": state_shape, "dtype": "float32"})
        outputs.append({"name": "next_state", "shape": state_shape, "dtype": "float32"})
    config = policy.config
    assert config is not None
    return {
        "format": fmt,
        "file": out.name,
        "greedy": True,
        "inputs": inputs,
        "outputs": outputs,
        "recurrent": policy.recurrent,
        "state": (
            "Feed zeros of the state's shape at an episode's start (one row per env) and next_state back "
            "with the next observation."
            if policy.recurrent
            else None
        ),
        "observation_space": {"shape": obs_shape, "dtype": str(np.dtype(obs_space.dtype)), "repr": str(obs_space)},
        "action_space": _space(policy.action_space),
        "env": {"id": config.env.id, "options": config.env.options},
        "algo": config.algo,
        "checkpoint": str(Path(policy.checkpoint).resolve()) if policy.checkpoint else None,
        "note": (
            "Observations as the env that distrl's make_env builds for this id and these options returns them "
            "(its preprocessing, such as frame stacking, is not in the file)."
        ),
    }


def _action_output(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"shape": ["N"], "dtype": "int64", "meaning": "the greedy action's index (argmax)"}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"shape": ["N", *space.shape], "dtype": "int64", "meaning": "each entry's most likely choice"}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"shape": ["N", *np.shape(np.zeros(space.n))], "dtype": "int64", "meaning": "1 where p > 0.5"}
    shape = list(space.shape or ())
    return {
        "shape": ["N", *shape],
        "dtype": "float32",
        "meaning": "the Gaussian's mean, clipped or squashed into the bounds",
    }


def _space(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": [_number(v) for v in np.asarray(space.low).ravel()],
            "high": [_number(v) for v in np.asarray(space.high).ravel()],
        }
    return {"type": type(space).__name__, "repr": str(space)}


def _number(value: Any) -> float | str:
    """JSON has no infinities: an unbounded dimension's bound is written "inf" or "-inf"."""
    value = float(value)
    return value if np.isfinite(value) else ("inf" if value > 0 else "-inf")


def cmd_export(args: argparse.Namespace) -> int:
    fmt: Optional[str] = args.format
    out = Path(args.out)
    if fmt is None:
        fmt = SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise ExportError(
                f"Which format should {str(out)!r} be? Pass --format torchscript or --format onnx "
                f"(or name the file .pt or .onnx)."
            )
    written = export(args.checkpoint, fmt, out)
    policy_json = json.loads(_description_path(written).read_text())
    print(f"checkpoint: {policy_json['checkpoint']}")
    print(f"{fmt}: {written.resolve()}")
    print(f"description: {_description_path(written).resolve()}")
    for entry in policy_json["inputs"]:
        print(f"input {entry['name']}: {entry['dtype']} {_shape(entry['shape'])}")
    for entry in policy_json["outputs"]:
        print(f"output {entry['name']}: {entry['dtype']} {_shape(entry['shape'])}")
    return 0


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
