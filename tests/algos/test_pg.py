"""REINFORCE with baseline against a step-by-step reference of Sutton & Barto's update."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from distrl.algos.interface import Progress
from distrl.algos.pg import PG, PGConfig, reinforce_loss
from distrl.config import ModelConfig
from distrl.models import build_model


def reference_loss(model, batch, config):
    """Per column, the return G_t by a backward loop (0 after a terminal step, V(final obs)
    after a time-limit cut, V(last obs) at the fragment's end), then the loss term by term."""
    T, B = batch["rewards"].shape
    with torch.no_grad():
        _, baseline = model(batch["obs"].flatten(0, 1))
        baseline = baseline.view(T, B).double().numpy()
        bootstrap = model(batch["last_obs"])[1].double().numpy()
        log_probs = model(batch["obs"].flatten(0, 1))[0].log_softmax(-1).view(T, B, -1).double().numpy()
    rewards = batch["rewards"].numpy()
    returns = np.zeros((T, B))
    for b in range(B):
        following = bootstrap[b]
        for t in reversed(range(T)):
            if batch["terminated"][t, b]:
                following = 0.0
            elif batch["truncated"][t, b]:
                following = float(batch["timeout_value"][t, b])
            following = rewards[t, b] + config.gamma * following
            returns[t, b] = following
    advantages = returns - baseline
    policy_loss = -np.mean(
        [advantages[t, b] * log_probs[t, b, batch["actions"][t, b]] for t in range(T) for b in range(B)]
    )
    baseline_loss = 0.5 * np.mean((returns - baseline) ** 2)
    entropy = -np.mean((np.exp(log_probs) * log_probs).sum(-1))
    return policy_loss + config.vf_coef * baseline_loss - config.ent_coef * entropy


def random_batch(T=6, B=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    terminated = torch.zeros(T, B, dtype=torch.bool)
    truncated = torch.zeros(T, B, dtype=torch.bool)
    terminated[2, 0] = True
    truncated[4, 1] = True
    return {
        "obs": torch.randn(T, B, 3, generator=generator),
        "actions": torch.randint(0, 2, (T, B), generator=generator),
        "rewards": torch.randn(T, B, generator=generator),
        "terminated": terminated,
        "truncated": truncated,
        "timeout_value": torch.where(truncated, torch.tensor(2.5), torch.tensor(0.0)),
        "last_obs": torch.randn(B, 3, generator=generator),
    }


def small_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(kind="mlp", hidden_sizes=[8]), gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))


def test_loss_matches_the_step_by_step_reference():
    config = PGConfig(gamma=0.9, vf_coef=0.7, ent_coef=0.05, normalize_advantages=False)
    model, batch = small_model(), random_batch()
    loss, _ = reinforce_loss(model, batch, config)
    assert loss.item() == pytest.approx(reference_loss(model, batch, config), rel=1e-5)


def test_an_update_makes_the_rewarded_action_more_likely():
    config = PGConfig(lr=0.05, lr_schedule="constant", gamma=0.0, ent_coef=0.0)
    model, batch = small_model(), random_batch(T=16, B=4, seed=1)
    batch["rewards"] = batch["actions"].float()  # action 1 pays 1, action 0 pays 0
    before = model(batch["obs"].flatten(0, 1))[0].softmax(-1)[:, 1].mean().item()
    algorithm = PG(config, model, None)
    for _ in range(5):
        update = algorithm.learn(batch, Progress(env_steps=0))
    after = model(batch["obs"].flatten(0, 1))[0].softmax(-1)[:, 1].mean().item()
    assert after > before + 0.05, (before, after)
    assert update.stats["learning_rate"] == pytest.approx(0.05)
