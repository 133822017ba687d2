"""Writes the CSV bid/ask stream that the market-making row (S4) is judged on besides the
built-in synthetic stream.

Why a generated file: this project works offline and ships no market data, and the CSV row
must exercise the path a user's own data takes (a file with a header, a timestamp column,
prices on a tick grid). The process differs from the built-in stream (two sines plus noise)
in the ways that matter to a trader:

- a fair value that walks at random, with drift regimes (up, flat, down) that last a few
  hundred quotes on average: trends a momentum rule can ride;
- a mid price that overshoots the fair value and reverts (an AR(1) deviation with a
  half-life of about 3 quotes): moves a momentum rule pays for;
- prices rounded to a 0.01 tick, a spread of 1-3 ticks that widens with the overshoot.

It is not market data, and docs/results.md says so. Run from the repository root:
    python scripts/make_quotes_csv.py            # rewrites configs/tutorials/data/quotes.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path("configs/tutorials/data/quotes.csv")


def quotes(rows: int, seed: int) -> np.ndarray:
    """``[rows, 2]`` bid/ask on a 0.01 grid."""
    rng = np.random.default_rng(seed)
    drifts = np.array([-0.008, 0.0, 0.008])
    regime = 1
    fair = np.empty(rows)
    value = 50.0
    for t in range(rows):
        if rng.random() < 1 / 300:  # regimes last 300 quotes on average
            regime = int(rng.integers(3))
        value += drifts[regime] + rng.normal(0, 0.005)
        fair[t] = value
    deviation = np.empty(rows)
    d = 0.0
    for t in range(rows):
        d = 0.8 * d + rng.normal(0, 0.012)
        deviation[t] = d
    mid = fair + deviation
    ticks = 1 + np.minimum(2, np.floor(np.abs(deviation) / 0.02 + rng.random(rows)))
    bid = np.round(mid - ticks * 0.005, 2)
    ask = np.maximum(np.round(mid + ticks * 0.005, 2), bid + 0.01)
    return np.stack([bid, ask], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = quotes(args.rows, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "bid", "ask"])
        for t, (bid, ask) in enumerate(data):
            seconds = 9.5 * 3600 + t  # one quote a second from 09:30:00
            stamp = f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
            writer.writerow([stamp, f"{bid:.2f}", f"{ask:.2f}"])
    print(f"wrote {len(data)} quotes to {args.out}")


if __name__ == "__main__":
    main()
