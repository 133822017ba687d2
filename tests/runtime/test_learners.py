"""Data-parallel learners in real runs (``runtime.num_learners``): Ray processes, a gloo
group between them, real envs and checkpoints. The math of a shared step is checked against
one learner in tests/algos/test_parallel.py; here, the runtime around it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_error, distrl_here, final_weights, read_progress, run_distrl

ROOT = Path(__file__).resolve().parent.parent.parent


def test_two_learners_end_a_seeded_run_at_the_weights_of_one(tmp_path):
    """PPO, synchronous, one worker: the same fragments reach the same updates whether one
    learner or two share them, so the last checkpoints agree to float rounding. The run
    with two also checks at each checkpoint that its learners agree bit for bit."""
    runs = {}
    for learners in (1, 2):
        out = tmp_path / f"learners-{learners}"
        result = run_distrl(
            "train",
            "--algo",
            "ppo",
            "--env",
            "CartPole-v1",
            "--num-workers",
            "1",
            "--seed",
            "3",
            "--stop-env-steps",
            "2000",
            "--out",
            str(out),
            "--set",
            f"runtime.num_learners={learners}",
            "ppo.async_sampling=false",
            "output.console=lines",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[learners] = (out, result.stdout + result.stderr)
    assert "2 learners on 1 node(s), each on cpu" in runs[2][1]
    one, two = read_progress(runs[1][0])[-1], read_progress(runs[2][0])[-1]
    assert one["env_steps"] == two["env_steps"] and one["learner_updates"] == two["learner_updates"] > 0
    alone, shared = final_weights(runs[1][0]), final_weights(runs[2][0])
    assert alone.keys() == shared.keys()
    assert any(not torch.equal(alone[name], shared[name]) for name in alone)  # two gradient sums, not one
    for name in alone:
        torch.testing.assert_close(shared[name], alone[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["dqn", "impala"])
def test_two_learners_run_the_replay_and_streaming_flows(tmp_path, algo):
    """DQN's replay flow (the first learner samples each batch and shares it) and IMPALA's
    stream: the run ends, counts every update, and its learners agree at the checkpoint."""
    out = tmp_path / algo
    settings = ["dqn.learning_starts=500"] if algo == "dqn" else []
    result = run_distrl(
        "train",
        "--algo",
        algo,
        "--env",
        "CartPole-v1",
        "--num-workers",
        "1",
        "--stop-env-steps",
        "3000",
        "--out",
        str(out),
        "--set",
        "runtime.num_learners=2",
        *settings,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_progress(out)[-1]
    assert last["env_steps"] >= 3000 and last["learner_updates"] > 0 and last["consumed_env_steps"] > 0
    assert last["learner_restarts"] == 0
    assert "2 learners on 1 node(s)" in result.stdout + result.stderr
    assert torch.isfinite(torch.cat([t.flatten().float() for t in final_weights(out).values()])).all()


@pytest.mark.parametrize(
    "settings, words",
    [
        (["--algo", "a3c", "--set", "runtime.num_learners=2"], "no batch for several learners to share"),
        (["--algo", "qlearning", "--env", "FrozenLake-v1", "--set", "runtime.num_learners=2"], "no gradient"),
        (["--serial", "--set", "runtime.num_learners=2"], "needs runtime.mode=ray"),
        (["--set", "runtime.num_learners=0"], "runtime.num_learners"),
    ],
)
def test_what_cannot_share_its_steps_is_refused(tmp_path, settings, words):
    result = distrl_here("train", *settings, "--out", str(tmp_path / "run"))
    assert_clean_error(result)
    assert words in result.stderr


@pytest.mark.slow
def test_chaos_with_two_learners_restores_the_group_and_every_step_is_accounted_for(tmp_path):
    """scripts/chaos.py, PPO with two learners: one of them killed (at random) and workers
    every 5 s. The group is restarted as one, and the books balance."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--stop-env-steps",
            "60000",
            "--every",
            "5",
            "--duration",
            "16",
            "--kill-learner-at",
            "6",
            "--set",
            "runtime.num_learners=2",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=400,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "chaos: every check holds" in result.stdout
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("chaos: figures ")]
    figures = json.loads(line.removeprefix("chaos: figures "))
    assert figures["learner_kills"] == figures["learner_restarts"] == 1, figures
    assert "Ray restarted all 2 learners" in output


def test_learners_that_need_more_gpus_than_the_cluster_has_are_refused(tmp_path):
    """Ray would wait for ever for a second GPU; the run says what it needs instead."""
    result = run_distrl(
        "train", "--out", str(tmp_path / "run"), "--set", "runtime.num_learners=2", "runtime.num_gpus_per_learner=1"
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "need 2 GPUs; the cluster has 0" in result.stderr
