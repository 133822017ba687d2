"""The recurrent core: the learner's unroll of a fragment from the recorded initial state gives
exactly what the worker computed step by step (the slow, obvious reference), states reset at
episode starts, and gradients reach the fragment's first step."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from distrl.algos.common import unroll_with_bootstrap
from distrl.config import resolve
from distrl.errors import ConfigError
from distrl.models import build_model

OBS = gym.spaces.Box(-1, 1, (3,), np.float32)
OBS_ACTIONS = gym.spaces.Discrete(2)


def model_of(kind: str, actions: gym.Space = OBS_ACTIONS):
    torch.manual_seed(0)
    return build_model(resolve({"model": {"recurrent": kind, "recurrent_size": 16}}).model, OBS, actions)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_unrolling_a_fragment_reproduces_the_workers_steps(kind):
    model = model_of(kind, gym.spaces.Box(-1, 1, (2,), np.float32))
    T, K = 12, 3
    obs = torch.randn(T, K, 3)
    starts = torch.rand(T, K) < 0.2
    state = torch.randn_like(model.initial_state(K))  # a fragment mid-episode: both cores' states
    initial = state.clone()
    actions, logps, values = [], [], []
    for t in range(T):  # the worker's way: one step at a time, carrying the state
        out = model.act(obs[t], state=state, episode_start=starts[t])
        state = out["state"]
        actions.append(out["actions"])
        logps.append(out["logp"])
        values.append(out["values"])
    batch = {
        "obs": obs,
        "episode_start": starts,
        "initial_state": initial,
        "last_obs": torch.randn(K, 3),
        "terminated": torch.zeros(T, K, dtype=torch.bool),
        "truncated": torch.zeros(T, K, dtype=torch.bool),
    }
    params, unrolled_values, bootstrap = unroll_with_bootstrap(model, batch)
    torch.testing.assert_close(model.log_prob(params, torch.stack(actions)), torch.stack(logps), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unrolled_values, torch.stack(values), rtol=1e-5, atol=1e-5)
    last = model.value(batch["last_obs"], state=state, episode_start=torch.zeros(K, dtype=torch.bool))
    torch.testing.assert_close(bootstrap, last, rtol=1e-5, atol=1e-5)


def test_an_episode_start_forgets_the_past_and_gradients_reach_the_first_step():
    model = model_of("lstm")
    obs = torch.randn(6, 2, 3, requires_grad=True)
    starts = torch.zeros(6, 2, dtype=torch.bool)
    starts[3, 1] = True  # column 1 starts a new episode at step 3
    state = torch.randn_like(model.initial_state(2))
    params, values = model.evaluate(obs, starts, state)
    values[-1].sum().backward()
    assert obs.grad[0, 0].abs().sum() > 0  # column 0: step 5 depends on step 0
    assert obs.grad[:3, 1].abs().sum() == 0  # column 1: nothing before its episode's start
    # After the start, column 1 is what a fresh episode from a zero state gives.
    fresh_starts = torch.tensor([[True], [False], [False]])
    _, fresh_values = model.evaluate(obs[3:, 1:], fresh_starts, model.initial_state(1))
    torch.testing.assert_close(values[3:, 1:], fresh_values)


def test_value_methods_refuse_a_memory():
    config = resolve({"model": {"recurrent": "gru"}}).model
    with pytest.raises(ConfigError, match="Recurrent policies work with ppo"):
        build_model(config, OBS, gym.spaces.Discrete(2), head="q_network")
