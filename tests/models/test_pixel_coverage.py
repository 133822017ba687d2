"""Every input pixel reaches the network's outputs (issue 31).

Unpadded strided convolutions silently drop a frame's right and bottom edge when the side
does not fit their strides: on 42x42 frames the conv nets saw pixels 0-35 only, and Pong's
paddle is at 36-37. These tests measure what a network sees the way the bug was found,
with input gradients: a pixel whose gradient is zero for random frames and random output
weights does not influence the output. They check the class of bug (every frame size, both
conv trunks, stacks and single gray frames) and every shipped config that builds a CNN."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from distrl.algos import ALGORITHMS
from distrl.api import prepare
from distrl.config import load_yaml, resolve
from distrl.envs import family_of, make_env
from distrl.envs.retro import DEFAULTS as RETRO_DEFAULTS
from distrl.errors import EnvironmentNotAvailable
from distrl.models import ActorCritic, QNetwork, build_model, model_notes
from distrl.models.cnn import ARCHITECTURES, NatureCNN

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "distrl" / "configs").rglob("*.yaml"))


def unseen_pixels(outputs, frames: torch.Tensor) -> np.ndarray:
    """The pixels of ``frames`` ([N, *obs]) that no output depends on, as a boolean mask over
    one observation (True: unseen), for the gradient of a random projection of each output."""
    mask = np.ones(frames.shape[1:], dtype=bool)
    for output in outputs(frames):
        (gradient,) = torch.autograd.grad((output * torch.randn_like(output)).sum(), frames, retain_graph=True)
        mask &= (gradient.abs().sum(0) == 0).numpy()
    return mask


def model_outputs(model):
    """The policy's and the value's outputs of ``model`` (for a Q-network: Q and max Q)."""

    def outputs(frames: torch.Tensor) -> list[torch.Tensor]:
        if isinstance(model, QNetwork):
            q = model(frames)
            return [q, q.max(-1).values]
        assert isinstance(model, ActorCritic)
        if model.recurrent:
            batch = frames.shape[0]
            start = torch.ones(1, batch, dtype=torch.bool)
            params, values = model.evaluate(frames.unsqueeze(0), start, model.initial_state(batch))
            return [params, values]
        return list(model(frames))

    return outputs


def random_frames(shape: tuple[int, ...], n: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.rand(n, *shape) * 255).requires_grad_(True)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("channels", [None, 1, 4])
def test_every_frame_size_reaches_the_conv_output_whole(architecture, channels):
    """Sides from the smallest the CNN takes to past 84, square and not: no pixel is unseen."""
    for height, width in [(side, side) for side in range(NatureCNN.MIN_SIZE, 90)] + [(42, 64), (60, 37)]:
        shape = (height, width) if channels is None else (channels, height, width)
        cnn = NatureCNN(shape, architecture)
        unseen = unseen_pixels(lambda frames, cnn=cnn: [cnn(frames)], random_frames(shape, n=2))
        assert not unseen.any(), f"{architecture} on {shape}: {np.argwhere(unseen)[:3].tolist()} ... unseen"


def test_the_gradient_check_finds_the_edge_an_unpadded_net_drops():
    """The check itself: the same layers without the padding lose exactly the 42x42 frame's
    last 6 rows and columns, as issue 31 measured."""
    cnn = NatureCNN((4, 42, 42), "small")
    unpadded = lambda frames: [cnn.convs(frames / 255.0)]  # noqa: E731 (the dense layer after them reads all)
    unseen = unseen_pixels(unpadded, random_frames((4, 42, 42), n=2))
    seen = ~unseen[0]
    assert seen[:36, :36].all() and not seen[36:, :].any() and not seen[:, 36:].any()


def observation_space(config) -> gym.Space:
    """The env's own observation space; for a retro game whose ROM is not imported here, the
    space its wrappers make (resize, gray, stack), from the config's options."""
    try:
        env = make_env(config.env.id, **config.env.options)
    except EnvironmentNotAvailable:
        assert family_of(config.env.id).name == "retro", config.env.id
        options = {**RETRO_DEFAULTS, **config.env.options}
        channels = (1 if options["grayscale"] else 3) * options["frame_stack"]
        return gym.spaces.Box(0, 255, (channels, options["screen_size"], options["screen_size"]), np.uint8)
    try:
        return env.observation_space
    finally:
        env.close()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(CONFIGS[0].parents[1])))
def test_every_pixel_of_a_shipped_config_reaches_the_policy_and_the_value(path):
    config = resolve(load_yaml(path))  # not prepare(): it refuses a retro game without its ROM
    space = observation_space(config)
    head = ALGORITHMS[config.algo].model_head
    if head == "q_table":
        pytest.skip("a Q-table of one-hot states: no pixels")
    model = build_model(config.model, space, gym.spaces.Discrete(3), head)
    if not any(isinstance(module, NatureCNN) for module in model.modules()):
        # No conv net: the observations are vectors, not frames, and an MLP reads every entry.
        assert space.dtype != np.uint8 or len(space.shape) not in (2, 3), (path, space)
        return
    unseen = unseen_pixels(model_outputs(model), random_frames(space.shape))
    assert not unseen.any(), f"{path.name}: {unseen.sum()} of {unseen.size} input pixels never reach the outputs"


def test_gray_frames_get_one_channel_and_an_inapplicable_cnn_choice_is_noted():
    """Catch's single [H, W] frames reach a conv net (not a 1,764-input MLP); model.cnn on
    vector observations is said, not ignored; a padded size is said too."""
    config, _ = prepare(load_yaml(CONFIGS[0].parent / "tutorials" / "catch_dqn.yaml"))
    model = build_model(config.model, gym.spaces.Box(0, 255, (44, 44), np.uint8), gym.spaces.Discrete(3), "q_network")
    assert isinstance(model.trunk, NatureCNN) and model.trunk.convs[0].in_channels == 1
    assert model(torch.zeros(2, 44, 44, dtype=torch.uint8)).shape == (2, 3)
    vectors = prepare({"env": {"id": "CartPole-v1"}, "model": {"cnn": "small"}})[0]
    notes = model_notes(vectors.model, gym.spaces.Box(-1, 1, (4,)))
    assert len(notes) == 1 and "model.cnn=small does not apply" in notes[0]
    assert model_notes(config.model, gym.spaces.Box(0, 255, (44, 44), np.uint8)) == []
    (padded,) = model_notes(config.model, gym.spaces.Box(0, 255, (4, 42, 42), np.uint8))
    assert "42x42 frames are zero-padded to 44x44" in padded
