"""`distrl baseline`: the random floor for any env and the market-making heuristic, checked
against the quotes the env plays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distrl.baselines import market_momentum, play
from distrl.envs import make_env
from distrl.envs.market_making import BUY, HOLD, SELL
from tests.conftest import assert_clean_error, distrl_here, read_progress, run_distrl

QUOTES_CSV = Path(__file__).parent.parent / "configs" / "tutorials" / "data" / "quotes.csv"


def test_momentum_reads_the_observation_as_the_quotes_say():
    """The heuristic from the observation against the same rule computed from the env's own
    quote table: the mid now minus the mid history - 1 steps ago, in mean spreads."""
    env = make_env("distrl/MarketMaking-v0", seed=3)
    raw = env.unwrapped
    obs, _ = env.reset()
    actions = {HOLD: 0, BUY: 0, SELL: 0}
    for _ in range(2000):
        mids = raw.quotes.mean(1)
        rise = (mids[raw.t] - mids[raw.t - raw.history + 1]) / raw.unit
        expected = BUY if rise > 1 and raw.position <= 0 else SELL if rise < -1 and raw.position >= 0 else HOLD
        action = market_momentum(obs, raw.history)
        assert action == expected
        actions[action] += 1
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    assert min(actions.values()) > 0  # every branch was taken


@pytest.mark.parametrize("data", ["synthetic", str(QUOTES_CSV)])
def test_heuristic_beats_random_on_both_splits(data):
    for split in ("train", "test"):
        random = play("distrl/MarketMaking-v0", "random", 20, 1, {"split": split, "data": data})
        heuristic = play("distrl/MarketMaking-v0", "heuristic", 20, 1, {"split": split, "data": data})
        assert np.mean(heuristic) > np.mean(random) + 3 * np.std(random) / np.sqrt(20)


def test_random_cartpole_is_the_known_floor():
    returns = play("CartPole-v1", "random", 200, 0, {})
    assert len(returns) == 200
    assert 15 < np.mean(returns) < 30  # a uniform policy balances about 22 steps


def test_cli_prints_the_mean_and_rejects_what_it_cannot_do():
    result = distrl_here("baseline", "distrl/MarketMaking-v0", "--policy", "heuristic", "--episodes", "5",
                        "--set", "env.options.split=test")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "policy: heuristic" in result.stdout and "return mean:" in result.stdout
    assert_clean_error(distrl_here("baseline", "CartPole-v1", "--policy", "heuristic"))
    assert_clean_error(distrl_here("baseline", "CartPole-v1", "--set", "ppo.lr=1"))
    assert_clean_error(distrl_here("baseline", "NoSuchEnv-v9"))


@pytest.mark.slow
def test_eval_judges_a_trained_policy_on_held_out_data(tmp_path):
    """S4's judgement: a policy trained on the train split, played on the test split (and on
    another data file) with `distrl eval --set env.options.KEY=VALUE`. The test split holds
    other quotes, so the same seeded episodes score differently."""
    out = tmp_path / "mm"
    trained = run_distrl("train", "--env", "distrl/MarketMaking-v0", "--num-workers", "1", "--stop-env-steps", "2000",
                         "--out", str(out), "--set", "output.console=lines")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert read_progress(out)[-1]["env_steps"] >= 2000

    def mean(*options: str) -> float:
        result = run_distrl("eval", str(out), "--episodes", "3", "--greedy", *(["--set", *options] if options else []))
        assert result.returncode == 0, result.stderr[-2000:]
        if options:  # the options it played, as it was given them
            pairs = [option.removeprefix("env.options.").split("=", 1) for option in options]
            assert "env options: " + ", ".join(f"{key}={value!r}" for key, value in pairs) in result.stdout
        return float(result.stdout.split("return mean:")[1].split()[0])

    on_train, on_test = mean(), mean("env.options.split=test")
    assert on_test != on_train
    assert mean("env.options.split=test") == on_test  # seeded: the same episodes again
    assert mean(f"env.options.data={QUOTES_CSV}", "env.options.split=test") not in (on_train, on_test)
    assert_clean_error(distrl_here("eval", str(out), "--set", "ppo.lr=1"))
    assert_clean_error(distrl_here("eval", str(out), "--set", "env.options.splitt=test"))
    assert_clean_error(distrl_here("eval", str(out), "--set", "env.options.split=validation"))
