"""The learner's CPU levers (runtime.learner_channels_last, runtime.learner_precision) against
the plain fp32 path they must stand in for."""

import copy

import gymnasium as gym
import numpy as np
import torch

from distrl.algos import ALGORITHMS
from distrl.algos.interface import Progress
from distrl.config import resolve
from distrl.models import build_model
from distrl.models.cnn import NatureCNN

FRAMES = gym.spaces.Box(0, 255, (4, 44, 44), np.uint8)


def pixel_model(algo: str):
    env = {"id": "ALE/Pong-v5", "options": {"screen_size": 44}}
    config = resolve({"algo": algo, "env": env, "model": {"cnn": "small"}})
    torch.manual_seed(0)
    return config, build_model(config.model, FRAMES, gym.spaces.Discrete(6), ALGORITHMS[algo].model_head)


def frames(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *FRAMES.shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


def test_channels_last_computes_what_the_contiguous_network_computes():
    """Same weights, same frames: outputs and gradients agree to fp32 rounding, and the
    weights a worker receives load into its plain network unchanged."""
    _, model = pixel_model("ppo")
    fast = copy.deepcopy(model)
    for cnn in (m for m in fast.modules() if isinstance(m, NatureCNN)):
        cnn.use_channels_last()
    assert fast.policy_trunk.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    obs = frames(16)
    outputs = [torch.cat([logits.flatten(), value]) for logits, value in (model(obs), fast(obs))]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for out in outputs:
        (out * torch.arange(out.numel())).sum().backward()
    for (name, slow), fast_param in zip(model.named_parameters(), fast.parameters()):
        # Another summation order: agreement to fp32 rounding, relative to the gradient's size.
        scale = slow.grad.abs().max().item()
        torch.testing.assert_close(fast_param.grad, slow.grad, rtol=1e-5, atol=1e-5 * scale, msg=name)
    worker = copy.deepcopy(model)
    worker.load_state_dict({k: torch.from_numpy(v.detach().numpy()) for k, v in fast.state_dict().items()})
    torch.testing.assert_close(worker(obs)[0], model(obs)[0])


def test_bf16_autocast_keeps_the_heads_and_the_loss_in_fp32():
    """Under the learner's autocast the trunk runs in bf16 and the outputs the losses read
    (logits, values, Q-values) come back fp32, close to the fp32 network's."""
    obs = frames(8)
    for algo in ("ppo", "dqn"):
        _, model = pixel_model(algo)
        plain = model(obs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(obs)
        as_tuple = lambda out: out if isinstance(out, tuple) else (out,)  # noqa: E731
        for a, b in zip(as_tuple(plain), as_tuple(mixed)):
            assert b.dtype == torch.float32
            torch.testing.assert_close(b, a, rtol=0.05, atol=0.05)


def test_a_dqn_step_under_bf16_autocast_sends_fp32_priorities():
    config, model = pixel_model("dqn")
    algorithm = ALGORITHMS["dqn"].algorithm_class(config.algo_config, model, None)
    batch = {
        "obs": frames(32),
        "next_obs": frames(32),
        "actions": torch.zeros(32, dtype=torch.int64),
        "rewards": torch.ones(32, 3),
        "terminated": torch.zeros(32, 3, dtype=torch.bool),
        "truncated": torch.zeros(32, 3, dtype=torch.bool),
        "cut": torch.zeros(32, dtype=torch.bool),
        "cut_value": torch.zeros(32),
        "weights": torch.ones(32),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        update = algorithm.learn(batch, Progress(0))
    assert update.priorities is not None and update.priorities.dtype == np.float32
    assert np.isfinite(update.priorities).all() and np.isfinite(update.stats["loss"])
