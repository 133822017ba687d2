import gymnasium as gym
import numpy as np
import pytest
import torch

from distrl.config import resolve
from distrl.errors import ConfigError
from distrl.models import ActorCritic, build_model
from distrl.models.heads import Categorical
from distrl.models.mlp import MLP


def test_sampled_actions_follow_the_softmax_of_the_logits():
    """act() samples with the Gumbel-max trick; its frequencies must match softmax(logits)
    (each within 5 standard errors over 200k draws) and logp must be log softmax."""
    torch.manual_seed(0)
    model = ActorCritic(MLP(1, [4]), None, Categorical(4, 3))
    logits = torch.tensor([[0.0, 1.0, -1.5]])
    model.policy_head.weight.data.zero_()
    model.policy_head.bias.data.copy_(logits[0])
    n = 200_000
    out = model.act(torch.zeros(n, 1))
    expected = torch.softmax(logits[0], -1).numpy()
    counts = np.bincount(out["actions"].numpy(), minlength=3) / n
    stderr = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(counts - expected) < 5 * stderr), (counts, expected)
    np.testing.assert_allclose(out["logp"].numpy(), np.log(expected)[out["actions"].numpy()], rtol=1e-5)
    greedy = model.act(torch.zeros(5, 1), greedy=True)["actions"]
    assert greedy.tolist() == [1] * 5


def test_build_model_picks_the_network_from_the_spaces():
    config = resolve({})
    mlp = build_model(config.model, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    logits, value = mlp(torch.zeros(3, 4))
    assert logits.shape == (3, 2) and value.shape == (3,)
    assert mlp.value_trunk is not None  # vector preset: separate trunks
    cnn = build_model(
        resolve({"model": {"kind": "auto"}}).model,
        gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
        gym.spaces.Discrete(6),
    )
    logits, value = cnn(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 6) and value.shape == (2,) and cnn.value_trunk is None
    with pytest.raises(ConfigError, match="1-D float Box"):
        build_model(config.model, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2, 2)))
    with pytest.raises(ConfigError, match="DQN takes Discrete actions only.*ppo, a2c"):
        build_model(config.model, gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2,)), head="q_network")


def conv_multiply_adds(trunk: torch.nn.Module, obs_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass, counted layer by layer from the output shapes."""
    total, x = 0, torch.zeros(1, *obs_shape)
    for layer in [*trunk.convs, *trunk.fc]:
        y = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            total += y.numel() * layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.Linear):
            total += layer.in_features * layer.out_features
        x = y
    return total


def test_the_small_cnn_is_the_2013_network_at_a_third_of_the_compute():
    """model.cnn: small is Mnih et al. 2013's trunk (16 8x8/4, 32 4x4/2, 256 units); its
    reason to exist is the compute it saves a CPU learner, so that is what is checked."""
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    nature = build_model(resolve({"model": {"kind": "cnn"}}).model, space, gym.spaces.Discrete(6))
    small = build_model(resolve({"model": {"kind": "cnn", "cnn": "small"}}).model, space, gym.spaces.Discrete(6))
    convs = [layer for layer in small.policy_trunk.convs if isinstance(layer, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [(16, 8, 4), (32, 4, 2)]
    assert small.policy_trunk.output_dim == 256
    logits, value = small(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert logits.shape == (2, 6) and value.shape == (2,)
    ratio = conv_multiply_adds(nature.policy_trunk, space.shape) / conv_multiply_adds(small.policy_trunk, space.shape)
    assert 3.0 < ratio < 3.3, ratio
