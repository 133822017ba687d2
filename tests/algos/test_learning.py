"""Each algorithm learns CartPole-v1 with 2 rollout workers, through the command line.

Budgets are env steps, stated per algorithm: at least 1.5 times the most steps the tuned
preset needed over three or more seeds on a 2-core machine (BENCHMARKS.md). The learning
rate anneals over the budget. PPO's own test is in tests/test_train.py (150k steps).

DQN's CartPole run is a benchmark, not a CI test: its learner trains 32 sampled transitions
per env step, so reaching 475 took 146-571 s on this machine (BENCHMARKS.md, 8 runs), a
tenth of CI's budget on its own. DQN's learning test in CI is LampAndSwitch
(tests/envs/test_custom.py: Dict observations through replay, about 9.5k steps)."""

import pytest

from conftest import read_progress, run_distrl

pytestmark = pytest.mark.slow

BUDGETS = {
    "a2c": 250_000,
    "a3c": 300_000,
    "impala": 400_000,
    "appo": 400_000,
    "pg": 500_000,  # 1.6 x 305k, its worst of 3 runs (BENCHMARKS.md)
}


# Runs that may take a second seed. IMPALA's stream is not reproducible from the seed (workers
# arrive in any order). Before its rewards were scaled for the loss, about one run in ten
# stalled between 250 and 450 (3 of 29 on this machine; BENCHMARKS.md, 2026-11-24, "IMPALA's
# stalls", and 2026-12-06), and one CI run had both seeds stall. Scaled, 12 of 12 reached 475
# in 99k-119k steps; twelve runs cannot rule out a rarer stall, so a second seed runs only
# when the first stalls, and both stalling fails the test.
ATTEMPTS = {"impala": 2}


@pytest.mark.parametrize("algo", list(BUDGETS))
def test_cartpole_reaches_475(tmp_path, algo):
    for seed in range(1, ATTEMPTS.get(algo, 1) + 1):
        out = tmp_path / f"{algo}-{seed}"
        result = run_distrl(
            "train",
            "--algo",
            algo,
            "--env",
            "CartPole-v1",
            "--num-workers",
            "2",
            "--stop-reward",
            "475",
            "--stop-env-steps",
            str(BUDGETS[algo]),
            "--seed",
            str(seed),
            "--out",
            str(out),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        last = read_progress(out)[-1]
        assert last["env_steps"] <= BUDGETS[algo] + 4096
        if last["episode_return_mean"] >= 475:
            return
    assert last["episode_return_mean"] >= 475, last
