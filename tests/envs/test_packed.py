"""Dict and Tuple observations travel packed into one byte row (envs/packed.py) and the model
unpacks them (models/multi_input.py): both are checked here against the parts themselves."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from distrl.config import resolve
from distrl.envs import frame_stack_of, make_env
from distrl.envs.packed import PackedSpace
from distrl.errors import ConfigError
from distrl.models import build_model
from distrl.models.multi_input import MultiInput, unpack

NESTED = gym.spaces.Dict(
    {
        "camera": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),  # channel-last, as cameras give it
        "arm": gym.spaces.Dict({"joints": gym.spaces.Box(-3.0, 3.0, (2, 3), np.float64)}),
        "mode": gym.spaces.Discrete(4),
        "lights": gym.spaces.MultiBinary(5),
    }
)


def expected_parts(observation: dict) -> dict[str, np.ndarray]:
    """What the model should see of each part, written out by hand."""
    one_hot = np.zeros(4, np.float32)
    one_hot[observation["mode"]] = 1
    return {
        "camera": observation["camera"].transpose(2, 0, 1),
        "arm/joints": observation["arm"]["joints"].astype(np.float32),
        "mode": one_hot,
        "lights": observation["lights"].astype(np.float32),
    }


def test_packing_keeps_every_part_and_the_model_unpacks_the_same():
    space = PackedSpace(NESTED)
    NESTED.seed(3)
    samples = [NESTED.sample() for _ in range(6)]
    rows = np.stack([space.pack(sample) for sample in samples])
    assert rows.dtype == np.uint8 and rows.shape == (6, 40 * 40 * 3 + 4 * 6 + 4 * 4 + 4 * 5)
    batch = torch.from_numpy(rows)
    for i, sample in enumerate(samples):
        for name, want in expected_parts(sample).items():
            assert np.array_equal(space.unpack(rows[i])[name], want), name
            part = next(p for p in space.parts if p.name == name)
            assert np.array_equal(unpack(batch, part)[i].numpy(), want), name


def test_a_tuple_packs_by_position():
    space = PackedSpace(gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(3))))
    row = space.pack((np.array([0.25, -0.5], np.float32), 2))
    assert [p.name for p in space.parts] == ["0", "1"]
    assert np.array_equal(space.unpack(row)["0"], [0.25, -0.5]) and np.array_equal(space.unpack(row)["1"], [0, 0, 1])


def test_a_part_distrl_cannot_encode_is_named():
    space = gym.spaces.Dict({"screen": gym.spaces.Box(0, 255, (8, 8), np.uint8), "note": gym.spaces.Text(10)})
    with pytest.raises(ConfigError, match="'note' is a Text space"):
        PackedSpace(space)


def test_the_model_has_one_encoder_per_part_and_acts_on_packed_rows():
    space = PackedSpace(NESTED)
    config = resolve({"algo": "ppo", "env": {"id": "CartPole-v1"}, "model": {"recurrent": "gru", "kind": "auto"}})
    model = build_model(config.model, space, gym.spaces.Discrete(3))
    assert isinstance(model.policy_trunk, MultiInput)
    kinds = {part.name: type(encoder).__name__ for part, encoder in zip(space.parts, model.policy_trunk.encoders)}
    assert kinds == {"camera": "NatureCNN", "arm/joints": "MLP", "mode": "MLP", "lights": "MLP"}
    rows = torch.from_numpy(np.stack([space.pack(NESTED.sample()) for _ in range(3)]))
    out = model.act(rows, state=model.initial_state(3), episode_start=torch.ones(3, dtype=torch.bool))
    assert out["actions"].shape == (3,) and torch.isfinite(out["values"]).all()


def test_doom_game_variables_ride_beside_the_screen():
    pytest.importorskip("vizdoom")
    env = make_env("VizdoomHealthGathering-v1", seed=1, game_variables=True)
    space = env.observation_space
    assert isinstance(space, PackedSpace) and [p.name for p in space.parts] == ["screen", "variables"]
    observation, _ = env.reset()
    game = env.unwrapped.game
    for _ in range(20):
        parts = space.unpack(observation)
        assert parts["screen"].shape == (4, 84, 84)
        assert parts["variables"][0] == pytest.approx(
            0.01 * game.get_game_variable(game.get_available_game_variables()[0])
        )
        observation, *_ = env.step(2)
    env.close()
    # Replay keeps packed rows whole: no frame-by-frame storage for them.
    assert frame_stack_of("VizdoomHealthGathering-v1", {"game_variables": True}) == 1
    assert frame_stack_of("VizdoomHealthGathering-v1", {}) == 4


def test_a_scenario_without_game_variables_refuses_the_option():
    pytest.importorskip("vizdoom")
    with pytest.raises(ConfigError, match="reports no game variables"):
        make_env("VizdoomMyWayHome-v1", game_variables=True)


def test_one_unaligned_row_unpacks_and_acts():
    """A float part after an odd number of pixel bytes, one row at a time (evaluation, one env
    copy, one time-limit bootstrap); a Discrete that starts at -1; a gray [H, W] image."""
    space = PackedSpace(
        gym.spaces.Dict(
            {
                "a_grid": gym.spaces.Box(0, 255, (5, 5), np.uint8),
                "b_pos": gym.spaces.Box(-9.0, 9.0, (2,), np.float32),
                "c_turn": gym.spaces.Discrete(3, start=-1),
            }
        )
    )
    assert [part.start for part in space.parts] == [0, 25, 33]  # b_pos starts at an odd byte
    row = space.pack({"a_grid": np.full((5, 5), 7, np.uint8), "b_pos": np.array([1.5, -2.0]), "c_turn": -1})
    one = torch.from_numpy(row[None])
    parts = {part.name: unpack(one, part)[0].numpy() for part in space.parts}
    assert parts["a_grid"].shape == (1, 5, 5) and (parts["a_grid"] == 7).all()
    assert np.array_equal(parts["b_pos"], [1.5, -2.0]) and np.array_equal(parts["c_turn"], [1, 0, 0])
    config = resolve({"algo": "ppo", "env": {"id": "CartPole-v1"}})
    model = build_model(config.model, space, gym.spaces.Discrete(2))
    assert model.act(one)["actions"].shape == (1,)
