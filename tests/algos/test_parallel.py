"""Data-parallel learners (algos/parallel.py): two learners, each a real process in a real
gloo group, sharing every gradient step of a batch, end with the weights one learner reaches
on the whole batch, and with the same weights as each other, for every algorithm that shares
its steps. The shares are uneven on purpose (5 env columns, 31 replay rows, minibatches of 14
and 13 transitions), so that a share's weight in the gradient sum matters."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from distrl.algos import ALGORITHMS
from distrl.algos.interface import Progress
from distrl.algos.parallel import ALONE, ENV_FIELDS, Shard, normalize
from distrl.config import ModelConfig
from distrl.models import build_model
from distrl.runtime.fragment import ENV, SCHEMA

T, B, ROWS, OBS = 8, 5, 31, 4

# name: (algorithm, its config section's values, the model's)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "ppo": ("ppo", {"epochs": 2, "num_minibatches": 3}, {}),
    "ppo-one-minibatch": ("ppo", {"epochs": 2, "num_minibatches": 1}, {}),
    "ppo-lstm": ("ppo", {"epochs": 2, "num_minibatches": 2}, {"recurrent": "lstm", "recurrent_size": 8}),
    "a2c": ("a2c", {"normalize_advantages": True}, {}),
    "pg": ("pg", {}, {}),
    "impala": ("impala", {}, {}),
    "appo": ("appo", {"epochs": 2, "num_minibatches": 2}, {}),
    "dqn": ("dqn", {"n_step": 3, "lr": 1e-3}, {}),
}
UPDATES = 2


def time_major_batch(generator: torch.Generator, model: Any) -> dict[str, torch.Tensor]:
    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    batch = {
        "obs": uniform(T, B, OBS) * 2 - 1,
        "actions": torch.randint(0, 2, (T, B), generator=generator),
        "logp": torch.log(0.3 + 0.4 * uniform(T, B)),
        "values": uniform(T, B) * 5,
        "rewards": torch.ones(T, B),
        "terminated": uniform(T, B) < 0.1,
        "truncated": uniform(T, B) < 0.05,
        "timeout_value": uniform(T, B) * 5,
        "episode_start": uniform(T, B) < 0.1,
        "last_obs": uniform(B, OBS) * 2 - 1,
        "bootstrap_value": uniform(B) * 5,
    }
    if getattr(model, "recurrent", False):
        batch["initial_state"] = model.initial_state(B) + 0.1 * uniform(*model.initial_state(B).shape)
    return batch


def replay_batch(generator: torch.Generator, n: int) -> dict[str, torch.Tensor]:
    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator)

    return {
        "obs": uniform(ROWS, OBS) * 2 - 1,
        "actions": torch.randint(0, 2, (ROWS,), generator=generator),
        "rewards": uniform(ROWS, n),
        "terminated": uniform(ROWS, n) < 0.1,
        "truncated": uniform(ROWS, n) < 0.05,
        "next_obs": uniform(ROWS, OBS) * 2 - 1,
        "cut": uniform(ROWS) < 0.05,
        "cut_value": uniform(ROWS) * 5,
        "weights": 0.5 + uniform(ROWS) * 0.5,
    }


def seeded_model(case: str) -> Any:
    algo, _, model_values = CASES[case]
    torch.manual_seed(0)
    return build_model(
        ModelConfig(kind="mlp", hidden_sizes=[16, 16], **model_values),
        gym.spaces.Box(-1.0, 1.0, (OBS,)),
        gym.spaces.Discrete(2),
        ALGORITHMS[algo].model_head,
    )


def learn(case: str, shard: Shard) -> dict[str, torch.Tensor]:
    """UPDATES updates of ``case`` from a seeded start; the model's weights after them."""
    algo, section, _ = CASES[case]
    spec = ALGORITHMS[algo]
    model = seeded_model(case)
    algorithm = spec.algorithm_class(spec.config_class(**section), model, None)
    algorithm.shard = shard
    generator = torch.Generator().manual_seed(1)
    for update in range(UPDATES):
        if spec.model_head == "q_network":
            batch = replay_batch(generator, section["n_step"])
        else:
            batch = time_major_batch(generator, model)
        algorithm.learn(batch, Progress(env_steps=1000 * update))
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def learner_process(rank: int, size: int, address: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=size)
    shard = Shard(rank, size, dist.group.WORLD)
    torch.save({case: learn(case, shard) for case in CASES}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def free_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture(scope="module")
def two_learners(tmp_path_factory) -> list[dict[str, dict[str, torch.Tensor]]]:
    """Each case learned by two learner processes in one gloo group: each rank's weights."""
    out = tmp_path_factory.mktemp("learners")
    mp.start_processes(learner_process, args=(2, free_address(), str(out)), nprocs=2, start_method="spawn")
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in range(2)]


@pytest.mark.parametrize("case", list(CASES))
def test_two_learners_end_at_the_weights_of_one(two_learners, case):
    torch.set_num_threads(1)
    alone = learn(case, ALONE)
    first, second = two_learners[0][case], two_learners[1][case]
    untrained = seeded_model(case).state_dict()
    assert any(not torch.equal(alone[name], untrained[name]) for name in alone)  # the updates moved it
    for name, tensor in alone.items():
        # The learners apply the same summed gradient: bit for bit the same weights.
        assert torch.equal(first[name], second[name]), name
        torch.testing.assert_close(first[name], tensor, rtol=1e-4, atol=1e-5, msg=f"{case}: {name}")


def test_env_fields_are_the_fragments_env_fields():
    assert ENV_FIELDS == {name for name, field in SCHEMA.items() if field.per == ENV}


def test_shares_cover_every_sample_once():
    for count in (3, 5, 31, 64):
        for size in (2, 3):
            rows = [Shard(rank, size).take(count) for rank in range(size)]
            covered = [i for part, _ in rows for i in range(count)[part]]
            assert covered == list(range(count))
            assert sum(share for _, share in rows) == pytest.approx(1.0)


def test_a_step_too_small_to_share_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="runtime.num_learners"):
        Shard(0, 3).take(2)


def test_normalize_alone_is_the_plain_normalisation():
    x = torch.tensor([1.0, 2.0, 4.0, 7.0])
    torch.testing.assert_close(normalize(x), (x - x.mean()) / (x.std() + 1e-8))
