"""distrl's own environments: gymnasium's checker, and their rules checked by hand."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distrl.envs import make_env
from distrl.envs.market_making import MarketMakingEnv, load_quotes
from distrl.errors import ConfigError


@pytest.mark.parametrize("env_id", ["distrl/MarketMaking-v0", "distrl/Catch-v0", "distrl/NChain-v0"])
def test_own_envs_pass_the_checker_raw_and_preprocessed(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)
    check_env(make_env(env_id, seed=0), skip_render_check=True)


def test_catch_pixels_and_rules():
    env = make_env("distrl/Catch-v0", seed=0)
    obs, _ = env.reset()
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    raw = gym.make("distrl/Catch-v0").unwrapped
    outcomes = set()
    for seed in range(30):
        frame, _ = raw.reset(seed=seed)
        assert frame.shape == (1, 10, 10) and frame.dtype == np.uint8
        assert frame[0, 0].sum() == 255 and frame[0, 9].sum() == 3 * 255  # fruit, 3-wide basket
        # Follow the fruit: always caught.
        for step in range(9):
            move = np.sign(raw.fruit_column - raw.basket) + 1
            frame, reward, terminated, truncated, _ = raw.step(move)
            assert terminated == (step == 8) and not truncated
        assert reward == 1.0
        # Random moves from the same start: +1 exactly when the fruit lands in the basket.
        raw.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(9):
            _, reward, terminated, _, _ = raw.step(int(rng.integers(0, 3)))
        outcomes.add(reward)
        expected = 1.0 if abs(raw.fruit_column - raw.basket) <= 1 else -1.0
        assert reward == expected
    assert outcomes == {1.0, -1.0}


def test_nchain_rules():
    env = gym.make("distrl/NChain-v0", slip=0.0).unwrapped
    env.reset(seed=0)
    rewards = [env.step(0)[1] for _ in range(6)]  # walk forward to state 4, then stay at the end
    assert rewards == [0, 0, 0, 0, 10, 10] and env.state == 4
    assert env.step(1)[:2] == (0, 2.0)  # back to the start pays the small reward
    slippery = gym.make("distrl/NChain-v0").unwrapped
    slippery.reset(seed=1)
    backs = sum(slippery.step(0)[1] == 2.0 for _ in range(20_000))
    assert abs(backs / 20_000 - 0.2) < 0.015  # "forward" slips back 20% of the time
    wrapped = make_env("distrl/NChain-v0", seed=0)
    obs, _ = wrapped.reset()
    assert obs.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert wrapped.spec.max_episode_steps == 1000


def write(path, text):
    path.write_text(text)
    return path


def test_market_making_trades_by_hand(tmp_path):
    # Four quotes; the agent sees 1 quote of history and trades at the current quotes.
    data = write(tmp_path / "q.csv", "time,bid,ask\n1,99,101\n2,103,104\n3,100,102\n4,95,96\n5,96,97\n")
    env = MarketMakingEnv(str(data), split="all", history=1, episode_length=None, fee=0.5, time_fee=0.1)
    obs, _ = env.reset(seed=0)
    assert env.t == 0 and obs.shape == (4,)
    assert env.unit == pytest.approx(np.mean([2, 1, 2, 1, 1]))
    # Buy at the ask 101: the fee 0.5 and a time fee 0.1 for holding.
    _, reward, *_ = env.step(1)
    assert reward == pytest.approx(-0.5 - 0.1)
    # Buying again while long does nothing but hold.
    _, reward, *_ = env.step(1)
    assert reward == pytest.approx(-0.1)
    # Sell at the bid 100 of quote 2 closes the long bought at 101.
    assert env.t == 2
    _, reward, _, truncated, info = env.step(2)
    assert reward == pytest.approx((100 - 101) - 0.5) and info["position"] == 0 and not truncated
    # Sell short at the bid 95; the data ends at the next step, which closes it at the ask 97.
    _, reward, _, truncated, info = env.step(2)
    assert truncated and info["position"] == 0
    assert reward == pytest.approx(-0.5 - 0.1 + (95 - 97) - 0.5)


def test_marked_reward_by_hand(tmp_path):
    # The same trades as above, paid as the open position's value changes.
    data = write(tmp_path / "q.csv", "time,bid,ask\n1,99,101\n2,103,104\n3,100,102\n4,95,96\n5,96,97\n")
    env = MarketMakingEnv(
        str(data), split="all", history=1, episode_length=None, fee=0.5, time_fee=0.1, reward="marked"
    )
    env.reset(seed=0)
    # Long at the ask 101, marked at the next bid 103.
    assert env.step(1)[1] == pytest.approx(-0.5 - 0.1 + (103 - 101))
    # Still long: the bid falls from 103 to 100.
    assert env.step(1)[1] == pytest.approx(-0.1 + (100 - 103))
    # Selling at 100 realises what was already marked: only the fee is new.
    assert env.step(2)[1] == pytest.approx(-0.5)
    # Short at 95, closed by the data's end at the ask 97.
    reward, truncated = env.step(2)[1:4:2]
    assert truncated and reward == pytest.approx(-0.5 - 0.1 + (95 - 97) - 0.5)


@pytest.mark.parametrize("data", ["synthetic", "csv"])
def test_marked_and_realized_rewards_sum_to_the_same_profit(tmp_path, data):
    """Episode returns are profits either way; only the timing of the reward differs."""
    if data == "csv":
        rng = np.random.default_rng(0)
        mid = 50 + np.cumsum(rng.normal(0, 0.05, 600))
        rows = "".join(f"{m - 0.02:.2f},{m + 0.02:.2f}\n" for m in mid)
        data = str(write(tmp_path / "q.csv", "bid,ask\n" + rows))
    options = dict(data=data, episode_length=300, fee=0.01, time_fee=0.001, synthetic_length=2000)
    realized = MarketMakingEnv(reward="realized", **options)
    marked = MarketMakingEnv(reward="marked", **options)
    actions = np.random.default_rng(1).integers(0, 3, size=10_000)
    for episode in range(5):
        realized.reset(seed=episode)
        marked.reset(seed=episode)
        totals, steps, differ = [0.0, 0.0], 0, False
        while True:
            a = actions[steps]
            r1, done = realized.step(a)[1:4:2]
            r2 = marked.step(a)[1]
            totals[0] += r1
            totals[1] += r2
            differ |= abs(r1 - r2) > 1e-9
            steps += 1
            if done:
                break
        assert steps == 300 and differ
        assert totals[1] == pytest.approx(totals[0], abs=1e-9)


def test_market_making_reward_is_an_env_option():
    env = make_env("distrl/MarketMaking-v0", seed=0, reward="marked", synthetic_length=2000)
    assert env.unwrapped.marked
    with pytest.raises(ConfigError, match="reward must be realized or marked"):
        make_env("distrl/MarketMaking-v0", seed=0, reward="unrealized", synthetic_length=2000)


def test_market_making_observation_is_relative_to_mid(tmp_path):
    data = write(tmp_path / "q.csv", "bid,ask\n10,12\n11,13\n12,14\n13,15\n")
    env = MarketMakingEnv(str(data), split="all", history=2, episode_length=None)
    obs, _ = env.reset(seed=0)
    # Quotes (10,12), (11,13) around the current mid 12, in units of the mean spread 2.
    np.testing.assert_allclose(obs, [-1.0, 0.0, -0.5, 0.5, 0.0, 0.0])
    obs, *_ = env.step(1)  # long at 13; now mid is 13
    np.testing.assert_allclose(obs[-2:], [1.0, 0.0])


def test_market_making_split_by_time():
    train = MarketMakingEnv(split="train", synthetic_length=1000, test_fraction=0.25)
    test = MarketMakingEnv(split="test", synthetic_length=1000, test_fraction=0.25)
    everything = MarketMakingEnv(split="all", synthetic_length=1000)
    assert len(train.quotes) == 750 and len(test.quotes) == 250
    np.testing.assert_array_equal(np.concatenate([train.quotes, test.quotes]), everything.quotes)
    assert np.all(everything.quotes[:, 0] < everything.quotes[:, 1])


def test_lobster_files_and_their_price_scale(tmp_path):
    # ask price 1, ask size 1, bid price 1, bid size 1, level 2 ...: prices in 1/10,000 dollars
    data = write(
        tmp_path / "book.csv", "1000200,5,999900,3,1000300,1,999800,2\n1000100,4,1000000,1,1000200,1,999900,9\n"
    )
    quotes = load_quotes(data)
    np.testing.assert_allclose(quotes, [[99.99, 100.02], [100.0, 100.01]])
    np.testing.assert_allclose(load_quotes(data, price_scale=100.0), quotes * 100)


@pytest.mark.parametrize(
    "text,line,problem",
    [
        ("bid,ask\n1,2\n1,two\n", 3, "is not a number"),
        ("bid,ask\n1,2\n3,2\n", 3, "above ask"),
        ("bid,ask\n1,2\n1,2,3\n", 3, "expected 2 columns"),
        ("price,size\n1,2\n", 1, "no 'bid' and 'ask'"),
        ("bid,ask\n1,2\n-1,2\n", 3, "must be positive"),
        ("1000200,5,999900,3\n9999999999,0,999900,3\n", 2, "LOBSTER dummy price"),
    ],
)
def test_malformed_rows_name_their_line(tmp_path, text, line, problem):
    data = write(tmp_path / "bad.csv", text)
    with pytest.raises(ConfigError, match=rf"bad.csv, line {line}: .*{problem}"):
        load_quotes(data)


def test_catch_grids_of_any_width_stay_gray():
    env = make_env("distrl/Catch-v0", seed=0, columns=3)
    obs, _ = env.reset()
    assert obs.shape == (4, 84, 84)
    check_env(env, skip_render_check=True)
