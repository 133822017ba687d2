"""MarketMaking: trading one unit on a stream of best bid / best ask quotes.

Each step the agent sees the last ``history`` quotes and its position, and chooses
hold (0), buy (1) or sell (2). It buys at the ask and sells at the bid, so every round trip
pays the spread; it may be flat, long one unit or short one unit. The reward (``reward``
option) is either the realised profit of a closed position (``"realized"``, the tutorials'
reward) or the change each step in the position's marked-to-market value (``"marked"``: the
open position is valued at the price that would close it, the bid when long, the ask when
short), both minus ``fee`` for every trade and ``time_fee`` for every step a position stays
open. An episode is ``episode_length`` steps from a random start in the chosen part of the
data (``split``); a position still open at the end is closed there.

Why two rewards with the same total: the episode's return is the same profit either way (the
marks telescope, and the last mark is the closing price), but the realised reward arrives
only when a position closes, often more steps after the decision that earned it than a
discount of 0.98 credits. The marked reward pays each step for the move the position rode,
which is what a learner needs to tell a good entry from a lucky exit.

Data (option ``data``):

- ``"synthetic"`` (default): a "wavy" mid price, the sum of two sines plus Gaussian noise,
  with a noisy spread around it (``synthetic_length`` quotes, fixed by ``data_seed``).
- a CSV file with a header row holding ``bid`` and ``ask`` columns (any case, other
  columns such as a timestamp are ignored), one quote per row, in time order.
- a LOBSTER order-book file (no header; columns ask price 1, ask size 1, bid price 1,
  bid size 1, then deeper levels); prices are integers in 1/10,000 of a dollar, so
  ``price_scale`` defaults to 10,000 for them.

Train/test split is by time: the first ``1 - test_fraction`` of the quotes are "train", the
rest "test" (``split="all"`` uses everything). Observations express prices relative to the
current mid price, in units of the data's mean spread, so they look alike at any price level.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import gymnasium as gym
import numpy as np

from distrl.errors import ConfigError

HOLD, BUY, SELL = 0, 1, 2
LOBSTER_NO_QUOTE = 9_999_999_999  # LOBSTER's dummy price for an empty level


def synthetic_quotes(length: int, seed: int) -> np.ndarray:
    """``[length, 2]`` bid/ask: mid = 100 + sin(2 pi t / 200) + 0.5 sin(2 pi t / 47) + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    mid = 100.0 + np.sin(2 * np.pi * t / 200.0) + 0.5 * np.sin(2 * np.pi * t / 47.0) + rng.normal(0, 0.05, length)
    spread = 0.05 + np.abs(rng.normal(0, 0.02, length))
    return np.stack([mid - spread / 2, mid + spread / 2], axis=1)


def _bad_row(path: Path, line: int, problem: str) -> ConfigError:
    return ConfigError(
        f"{path}, line {line}: {problem}. MarketMaking reads a CSV with a header row holding 'bid' "
        f"and 'ask' columns, or a LOBSTER order-book file (see docs/environments.md)."
    )


def _check_quote(path: Path, line: int, bid: float, ask: float) -> None:
    if not (np.isfinite(bid) and np.isfinite(ask)):
        raise _bad_row(path, line, f"bid {bid} / ask {ask} is not a finite number")
    if bid <= 0 or ask <= 0:
        raise _bad_row(path, line, f"prices must be positive, got bid {bid}, ask {ask}")
    if bid > ask:
        raise _bad_row(path, line, f"bid {bid} is above ask {ask}")


def load_quotes(path: str | Path, data_format: str = "auto", price_scale: Optional[float] = None) -> np.ndarray:
    """``[N, 2]`` bid/ask prices from a CSV or LOBSTER file; a malformed row raises a
    ConfigError naming its line."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (a relative path is read from the folder distrl runs in, {Path.cwd()})"
        raise ConfigError(f"MarketMaking data file {str(path)!r} does not exist{where}.")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ConfigError(f"MarketMaking data file {str(path)!r} is empty.")
    if data_format == "auto":
        first = rows[0]
        try:
            [float(cell) for cell in first]
            data_format = "lobster"
        except ValueError:
            data_format = "csv"

    quotes = []
    if data_format == "csv":
        header = [cell.strip().lower() for cell in rows[0]]
        if "bid" not in header or "ask" not in header:
            raise _bad_row(path, 1, f"the header {rows[0]} has no 'bid' and 'ask' columns")
        bid_col, ask_col = header.index("bid"), header.index("ask")
        scale = price_scale or 1.0
        for line, row in enumerate(rows[1:], start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise _bad_row(path, line, f"expected {len(header)} columns like the header, got {len(row)}")
            try:
                bid, ask = float(row[bid_col]) / scale, float(row[ask_col]) / scale
            except ValueError:
                raise _bad_row(path, line, f"bid {row[bid_col]!r} or ask {row[ask_col]!r} is not a number") from None
            _check_quote(path, line, bid, ask)
            quotes.append((bid, ask))
    elif data_format == "lobster":
        scale = price_scale or 10_000.0
        width = len(rows[0])
        if width < 4 or width % 4:
            raise _bad_row(path, 1, f"a LOBSTER order-book row has 4 columns per level, got {width}")
        for line, row in enumerate(rows, start=1):
            if not row:
                continue
            if len(row) != width:
                raise _bad_row(path, line, f"expected {width} columns like line 1, got {len(row)}")
            try:
                ask, bid = float(row[0]), float(row[2])
            except ValueError:
                raise _bad_row(path, line, f"ask {row[0]!r} or bid {row[2]!r} is not a number") from None
            if abs(ask) >= LOBSTER_NO_QUOTE or abs(bid) >= LOBSTER_NO_QUOTE:
                raise _bad_row(path, line, "the best level is empty (LOBSTER dummy price)")
            bid, ask = bid / scale, ask / scale
            _check_quote(path, line, bid, ask)
            quotes.append((bid, ask))
    else:
        raise ConfigError(f"MarketMaking data_format must be auto, csv or lobster; got {data_format!r}.")
    return np.asarray(quotes, dtype=np.float64).reshape(-1, 2)


class MarketMakingEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        data: str = "synthetic",
        split: str = "train",
        test_fraction: float = 0.2,
        history: int = 10,
        episode_length: Optional[int] = 1000,
        fee: float = 0.0,
        time_fee: float = 0.0,
        data_format: str = "auto",
        price_scale: Optional[float] = None,
        synthetic_length: int = 20_000,
        data_seed: int = 0,
        reward: str = "realized",
    ):
        if reward not in ("realized", "marked"):
            raise ConfigError(f"MarketMaking reward must be realized or marked; got {reward!r}.")
        if split not in ("train", "test", "all"):
            raise ConfigError(f"MarketMaking split must be train, test or all; got {split!r}.")
        if not 0 < test_fraction < 1:
            raise ConfigError(f"MarketMaking test_fraction must be in (0, 1); got {test_fraction}.")
        if history < 1:
            raise ConfigError(f"MarketMaking history must be >= 1; got {history}.")
        quotes = (
            synthetic_quotes(synthetic_length, data_seed)
            if data == "synthetic"
            else load_quotes(data, data_format, price_scale)
        )
        cut = int(len(quotes) * (1 - test_fraction))
        quotes = {"train": quotes[:cut], "test": quotes[cut:], "all": quotes}[split]
        if len(quotes) < history + 1:
            raise ConfigError(
                f"MarketMaking has {len(quotes)} quotes in its {split!r} split; it needs at least "
                f"history + 1 = {history + 1}."
            )
        self.quotes = quotes
        self.history = history
        self.episode_length = episode_length
        self.fee, self.time_fee = fee, time_fee
        self.marked = reward == "marked"
        # Prices in the observation are in units of the mean spread, relative to the current mid.
        self.unit = float(np.mean(quotes[:, 1] - quotes[:, 0])) or 1.0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2 * history + 2,), np.float32)
        self.action_space = gym.spaces.Discrete(3)

    def _observation(self) -> np.ndarray:
        window = self.quotes[self.t - self.history + 1 : self.t + 1]
        mid = self.quotes[self.t].mean()
        entry = (self.entry_price - mid) / self.unit if self.position else 0.0
        return np.concatenate([((window - mid) / self.unit).ravel(), [self.position, entry]]).astype(np.float32)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        first = self.history - 1  # the first quote with a full history behind it
        last = len(self.quotes) - 1
        if self.episode_length and last - self.episode_length > first:
            self.t = int(self.np_random.integers(first, last - self.episode_length + 1))
            self.end = self.t + self.episode_length
        else:  # no length, or the split is too short for one: play the whole split
            self.t, self.end = first, last
        self.position = 0
        self.entry_price = 0.0
        # The episode's trading record, for info["episode_metrics"] at its end.
        self.gross_profit = 0.0
        self.round_trips = 0
        self.steps_long = self.steps_short = self.steps = 0
        return self._observation(), {"position": 0}

    def _trade(self, side: int) -> float:
        """Buy (+1) at the ask or sell (-1) at the bid; returns the realised profit."""
        bid, ask = self.quotes[self.t]
        price = ask if side > 0 else bid
        if self.position == 0:
            self.position, self.entry_price = side, price
            return -self.fee
        if self.position == -side:  # closes the open position
            profit = (price - self.entry_price) * -side
            self.position, self.entry_price = 0, 0.0
            self.gross_profit += profit
            self.round_trips += 1
            return profit - self.fee
        return 0.0  # already holding one unit that way: nothing happens

    def _open_value(self) -> float:
        """What closing the open position at the current quote would realise (0 when flat)."""
        if not self.position:
            return 0.0
        bid, ask = self.quotes[self.t]
        return (bid - self.entry_price) if self.position > 0 else (self.entry_price - ask)

    def step(self, action):
        action = int(action)
        before = self._open_value() if self.marked else 0.0
        reward = 0.0
        if action == BUY:
            reward += self._trade(+1)
        elif action == SELL:
            reward += self._trade(-1)
        if self.position:
            reward -= self.time_fee
        self.steps += 1
        self.steps_long += self.position > 0
        self.steps_short += self.position < 0
        self.t += 1
        truncated = self.t >= self.end
        if truncated and self.position:  # the data or the episode ends: close at the last quote
            reward += self._trade(-self.position)
        if self.marked:
            reward += self._open_value() - before
        info: dict = {"position": self.position}
        if truncated:
            info["episode_metrics"] = self.episode_metrics()
        return self._observation(), float(reward), False, truncated, info

    def episode_metrics(self) -> dict[str, float]:
        """What a trader reads off an episode besides its return (the profit net of fees):
        the profit before fees, how many positions were opened and closed, and the share of
        steps spent long and short. A return near zero reads differently when it came from
        no trades than from many trades whose spread and fees ate their profit."""
        steps = max(self.steps, 1)
        return {
            "gross_profit": self.gross_profit,
            "round_trips": float(self.round_trips),
            "long_share": self.steps_long / steps,
            "short_share": self.steps_short / steps,
        }
