"""A NaN or Inf loss skips its gradient step (weights and optimizer state untouched) and is
counted; a run that keeps getting them stops with its weights intact."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import read_progress, run_distrl
from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import resolve
from distrl.models import build_model


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_nonfinite_loss_skips_the_step_and_a_finite_one_resets_the_count(bad):
    config = resolve({"algo": "ppo", "env": {"id": "CartPole-v1"}})
    model = build_model(config.model, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    algorithm = ALGORITHMS["ppo"].algorithm_class(config.algo_config, model, 10_000)
    obs = torch.randn(8, 4)

    def loss(scale: float) -> torch.Tensor:
        params, values = model(obs)
        return scale * (params.pow(2).sum() + values.pow(2).sum())

    algorithm.gradient_step(loss(1.0))  # a first real step, so that Adam has state
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in algorithm.optimizer.state_dict()["state"][0].items()}
    for _ in range(2):
        algorithm.gradient_step(loss(bad))
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in algorithm.optimizer.state_dict()["state"][0].items())
    assert (algorithm.nonfinite_steps, algorithm.nonfinite_in_a_row) == (2, 2)
    algorithm.gradient_step(loss(1.0))
    assert not all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert (algorithm.nonfinite_steps, algorithm.nonfinite_in_a_row) == (2, 0)


@pytest.mark.slow
def test_a_run_with_nan_rewards_stops_with_finite_weights_saved(tmp_path):
    out = tmp_path / "run"
    result = run_distrl(
        "train", "--num-workers", "1", "--stop-env-steps", "50000", "--out", str(out),
        "--set", "ppo.reward_scale=.nan", "runtime.max_nonfinite_updates=3",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "last 3 updates had a NaN or Inf loss" in result.stderr
    saved, state = checkpoint.load(out)
    assert str(saved) in result.stderr
    assert all(torch.isfinite(tensor).all() for tensor in state["model"].values())
    last = read_progress(out)[-1]
    assert last["skipped_gradient_steps"] > 0 and last["env_steps"] < 50000
