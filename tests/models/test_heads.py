"""The action heads against torch.distributions, the slow and obviously correct reference:
log-probabilities, entropies, sample frequencies, and what the env receives."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as D

from distrl.config import resolve
from distrl.models import build_model
from distrl.models.heads import Bernoulli, DiagGaussian, MultiCategorical

MODEL = resolve({}).model


def test_multi_categorical_scores_the_sum_of_independent_categoricals():
    torch.manual_seed(0)
    head = MultiCategorical(8, [3, 2, 4])
    params = head(torch.randn(5, 7, 8))  # any leading axes: [T, B]
    actions = head.sample(params)
    assert actions.shape == (5, 7, 3) and actions.dtype == torch.int64
    parts = params.split([3, 2, 4], -1)
    reference = sum(D.Categorical(logits=p).log_prob(actions[..., d]) for d, p in enumerate(parts))
    torch.testing.assert_close(head.log_prob(params, actions), reference)
    torch.testing.assert_close(head.entropy(params), sum(D.Categorical(logits=p).entropy() for p in parts))
    greedy = head.sample(params, greedy=True)
    assert torch.equal(greedy, torch.stack([p.argmax(-1) for p in parts], -1))


def test_bernoulli_matches_torch_and_samples_at_its_probabilities():
    torch.manual_seed(1)
    head = Bernoulli(4, 3)
    params = torch.tensor([[2.0, -1.0, 0.0]]).expand(200_000, 3)
    actions = head.sample(params)
    p = torch.sigmoid(params[0])
    stderr = (p * (1 - p) / 200_000).sqrt()
    assert torch.all((actions.float().mean(0) - p).abs() < 5 * stderr)
    reference = D.Bernoulli(logits=params[:100]).log_prob(actions[:100].float()).sum(-1)
    torch.testing.assert_close(head.log_prob(params[:100], actions[:100]), reference)
    torch.testing.assert_close(head.entropy(params[:2]), D.Bernoulli(logits=params[:2]).entropy().sum(-1))
    assert head.sample(params[:1], greedy=True).tolist() == [[1, 0, 0]]


@pytest.mark.parametrize("log_std", ["parameter", "state"])
def test_gaussian_matches_torch_normal(log_std):
    torch.manual_seed(2)
    space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
    head = DiagGaussian(6, space, log_std, -0.5, "clip")
    params = head(torch.randn(4, 6))
    mean, log_std_values = params.split(3, -1)
    if log_std == "parameter":
        assert torch.allclose(log_std_values, torch.full_like(log_std_values, -0.5))
    normal = D.Normal(mean, log_std_values.exp())
    actions = head.sample(params)
    torch.testing.assert_close(head.log_prob(params, actions), normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(head.entropy(params), normal.entropy().sum(-1))
    assert torch.equal(head.sample(params, greedy=True), mean)


def test_gaussian_samples_reach_the_env_clipped_or_squashed_into_the_bounds():
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    u = np.array([[-5.0, 0.0], [0.5, 9.0]], np.float32)
    clipped = DiagGaussian(4, space, "parameter", 0.0, "clip").to_env(u)
    np.testing.assert_allclose(clipped, [[-2.0, 0.0], [0.5, 1.0]])
    squashed = DiagGaussian(4, space, "parameter", 0.0, "squash").to_env(u)
    expected = space.low + (np.tanh(u) + 1) / 2 * (space.high - space.low)
    np.testing.assert_allclose(squashed, expected, rtol=1e-6)
    assert np.all(squashed >= space.low) and np.all(squashed <= space.high) and squashed.dtype == np.float32


def test_build_model_picks_the_head_of_each_action_space():
    obs = gym.spaces.Box(-1, 1, (4,), np.float32)
    for space, shape, dtype in [
        (gym.spaces.Box(-1, 1, (2,), np.float32), (5, 2), torch.float32),
        (gym.spaces.MultiDiscrete([3, 5]), (5, 2), torch.int64),
        (gym.spaces.MultiBinary(6), (5, 6), torch.int64),
        (gym.spaces.Discrete(4), (5,), torch.int64),
    ]:
        model = build_model(MODEL, obs, space)
        out = model.act(torch.zeros(5, 4))
        assert out["actions"].shape == shape and out["actions"].dtype == dtype, space
        sent = model.env_actions(out["actions"].numpy())
        assert all(space.contains(row.item() if row.ndim == 0 else row) for row in sent), space
