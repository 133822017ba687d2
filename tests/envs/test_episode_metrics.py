"""An env's own episode metrics (``info["episode_metrics"]`` at an episode's last step): the
convention's checks, each vector path and built-in env that reports them, and the driver's
windows over the last 100 episodes (docs/environments.md, "Your env's episode metrics")."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from conftest import USER_PACKAGE
from distrl.config import resolve
from distrl.envs.market_making import MarketMakingEnv
from distrl.envs.vector import EnvLoop
from distrl.envs.wrappers import episode_metrics_of
from distrl.errors import EnvContractError
from distrl.metrics import scalars
from distrl.runtime.tally import RETURN_WINDOW, Tally


def test_numbers_and_bools_become_floats():
    info = {"episode_metrics": {"profit": np.float32(1.5), "kills": np.int64(3), "won": True, "t": np.array(2.0)}}
    assert episode_metrics_of(info) == {"profit": 1.5, "kills": 3.0, "won": 1.0, "t": 2.0}
    assert episode_metrics_of({}) == {}


@pytest.mark.parametrize(
    "found, named",
    [
        ([1.0, 2.0], "a list in info\\['episode_metrics'\\]"),
        ({"profit": "12"}, "'profit' as a str"),
        ({"curve": [1, 2]}, "'curve' as a list"),
        ({"pos": np.zeros(3)}, "'pos' as a ndarray"),
        ({"a b": 1}, "named 'a b'"),
        ({3: 1}, "named 3"),
    ],
)
def test_anything_else_is_one_paragraph_naming_the_env_and_the_metric(found, named):
    with pytest.raises(EnvContractError, match=named) as caught:
        episode_metrics_of({"episode_metrics": found}, "'Mine-v0'")
    assert str(caught.value).startswith("'Mine-v0'") and "\n" not in str(caught.value)


@pytest.fixture
def guess_sign(monkeypatch):
    monkeypatch.syspath_prepend(str(USER_PACKAGE.parent))
    monkeypatch.delitem(sys.modules, "mygames.envs", raising=False)
    import mygames.envs  # noqa: F401  (registers GuessSign-v0)

    return "GuessSign-v0"


def test_the_env_loop_reports_each_games_metrics_beside_its_return(guess_sign):
    loop = EnvLoop(guess_sign, 3, seed=0, options={"length": 4})
    loop.reset()
    rng = np.random.default_rng(0)
    returns, metrics = [], []
    for _ in range(40):
        step = loop.step(rng.integers(0, 2, 3))
        assert len(step.episode_metrics) == len(step.episode_returns)
        returns += step.episode_returns
        metrics += step.episode_metrics
    assert len(returns) == 30
    # One point a right guess: the env's accuracy is the return over the length, game by game.
    assert [m["accuracy"] * 4 for m in metrics] == pytest.approx(returns)
    assert all(0 <= m["plus_share"] <= 1 for m in metrics)
    loop.close()


def test_market_making_metrics_add_up_to_its_return():
    """Net of fees, the profit is the return: two fees a round trip, the time fee a step held."""
    fee, time_fee = 0.003, 0.0005
    env = MarketMakingEnv(episode_length=300, fee=fee, time_fee=time_fee)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    total, info, steps = 0.0, {}, 0
    while "episode_metrics" not in info:
        _, reward, _, truncated, info = env.step(int(rng.choice(3, p=[0.8, 0.1, 0.1])))
        total += reward
        steps += 1
    m = episode_metrics_of(info)
    assert truncated and steps == 300 and m["round_trips"] > 5
    held = (m["long_share"] + m["short_share"]) * steps
    assert m["gross_profit"] - 2 * fee * m["round_trips"] - time_fee * held == pytest.approx(total, abs=1e-9)


def test_doom_reports_the_kill_count_and_game_variables_at_an_episodes_end():
    pytest.importorskip("vizdoom")
    options = {"actions": [["MOVE_LEFT"], ["ATTACK"]], "game_variables": True, "game_variables_scale": 1.0}
    from distrl.envs import doom

    env = doom.make("VizdoomBasic-v1", **options)  # not make_env: it would pack the Dict observation
    obs, _ = env.reset(seed=0)
    start_ammo = float(obs["variables"][0])
    found = []
    for action in (0, 1):  # a game of walking left, then one of shooting
        info: dict = {}
        while "episode_return" not in info:
            obs, _, _, _, info = env.step(action)
        found.append(episode_metrics_of(info))
        env.reset()
    walked, shot = found
    assert set(walked) == {"killcount", "ammo2"}
    assert walked["ammo2"] == start_ammo  # the engine's count, as the first observation showed it
    assert walked["killcount"] == 0 and shot["ammo2"] < walked["ammo2"]
    env.close()


def test_the_driver_keeps_each_metrics_last_100_episodes_and_resumes_them():
    config = resolve({})
    tally = Tally(config)
    # 150 episodes report "a"; only the odd ones report "b" (a metric some episodes lack).
    for i in range(150):
        episode = {"a": float(i)} | ({"b": 1.0} if i % 2 else {})
        tally.fragment(
            {"env_steps": 10, "env_frames": 10, "episode_returns": [1.0], "episode_lengths": [10],
             "episode_metrics": [episode]}
        )  # fmt: skip
    # A summary without the field (a worker of an older version) counts as before.
    tally.fragment({"env_steps": 10, "env_frames": 10, "episode_returns": [], "episode_lengths": []})
    record = json.loads(json.dumps(tally.report({"worker": 1}, num_workers=1)))
    assert record["episode_metrics"] == {"a": pytest.approx(np.mean(range(50, 150))), "b": 1.0}
    assert len(tally.recent_metrics["b"]) == 75 <= RETURN_WINDOW
    assert scalars(record)["episode/a"] == pytest.approx(99.5)
    resumed = Tally(config, tally.state())
    assert {name: list(values) for name, values in resumed.recent_metrics.items()} == {
        name: list(values) for name, values in tally.recent_metrics.items()
    }


def test_a_run_whose_env_reports_none_has_no_field():
    tally = Tally(resolve({}))
    tally.fragment(
        {"env_steps": 5, "env_frames": 5, "episode_returns": [2.0], "episode_lengths": [5], "episode_metrics": [{}]}
    )
    record = tally.report({"worker": 1}, num_workers=1)
    assert "episode_metrics" not in record and not math.isnan(record["episode_return_mean"])
