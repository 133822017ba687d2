"""A/B runs of one config: a baseline and variants that each change one thing, on the same
seed and the same wall-clock limit, compared at equal env steps (issue 31, item 4).

    python scripts/ab_runs.py --config pong_cpu --seed 1 --seconds 1320 --runs runs/ab
    python scripts/ab_runs.py --config pong_cpu --only sticky-0 sync --seconds 1320 --runs runs/ab
    python scripts/ab_runs.py --config pong_cpu --runs runs/ab --table-only --figure ab.png

Each run goes to RUNS/VARIANT-seedS; one that already holds a finished run is not trained
again, so the variants can be run over several sittings and tabulated together. The table
reads each run's 100-episode mean at the first report at or past each of ``--at`` env steps:
a change is judged by what it does to the samples the run needs, and separately by its
env steps per second, since two cores give every variant the same time but not the same
number of steps.

The runs stop on time, not on ``stop.env_steps``: that key is also the horizon of the
config's lr schedule (``ppo.lr_schedule: linear``), which must stay the same in every run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from reproduce import finished

ROOT = Path(__file__).resolve().parents[1]

# What each variant changes in the config; one change each.
VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "frames-84": ["env.options.screen_size=84"],
    "nature": ["model.cnn=nature"],
    "sticky-0": ["env.options.repeat_action_probability=0"],
    "sync": ["ppo.async_sampling=false"],  # the first pair, run while pong_cpu sampled async
    "async": ["ppo.async_sampling=true"],
    "lr-2.5e-4": ["ppo.lr=2.5e-4"],
    # Not one of the references' differences: the 44-pixel frame with the ball at full
    # contrast (env.options.downscale, added after frames-84 learned ~3x faster per step).
    "pool-max": ["env.options.downscale=max"],
}


def train(config: str, seed: int, seconds: float, changes: list[str], out: Path) -> None:
    if finished(out):
        print(f"  {out}: already trained", flush=True)
        return
    if out.exists():
        sys.exit(f"ab_runs: {out} holds an unfinished run; remove it to train it again.")
    command = [sys.executable, "-m", "distrl", "train", "--config", config, "--seed", str(seed), "--out", str(out)]
    command += ["--set", "output.console=lines", "output.tensorboard=false", f"stop.seconds={seconds:g}", *changes]
    print("  " + " ".join(command[2:]), flush=True)
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"ab_runs: {out} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")


def row(name: str, out: Path, marks: list[int]) -> str:
    reports = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines() if line.strip()]
    seen = [r for r in reports if r.get("episode_return_mean") is not None]
    at = []
    for mark in marks:
        hit = next((r for r in seen if r["env_steps"] >= mark), None)
        at.append(f"{hit['episode_return_mean']:.2f}" if hit else "-")
    last = reports[-1]
    rate = last["env_steps"] / last["time_s"]
    change = ", ".join(VARIANTS.get(name, ["?"])) or "(the config)"
    return (
        f"| {name} | {change} | {' / '.join(at)} | {seen[-1]['episode_return_mean']:.2f} "
        f"| {last['env_steps']:,} in {last['time_s'] / 60:.1f} min | {rate:,.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a shipped config's name or a YAML file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=1320, help="each run's wall-clock limit")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ab")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(VARIANTS), help="train (and tabulate) these variants (default: all)"
    )
    parser.add_argument("--at", nargs="+", type=int, default=[500_000, 1_000_000, 1_200_000], help="env steps")
    parser.add_argument("--table-only", action="store_true", help="train nothing; tabulate the runs there are")
    parser.add_argument("--figure", type=Path, help="draw the runs' curves into this PNG")
    args = parser.parse_args()

    names = args.only or list(VARIANTS)
    if not args.table_only:
        for name in names:
            train(args.config, args.seed, args.seconds, VARIANTS[name], args.runs / f"{name}-seed{args.seed}")
    # With --only, the table and figure show those variants alone, in the order given.
    done = [(n, args.runs / f"{n}-seed{args.seed}") for n in names if (args.runs / f"{n}-seed{args.seed}").is_dir()]
    if not done:
        sys.exit(f"ab_runs: no runs under {args.runs} for seed {args.seed}.")
    marks = " / ".join(f"{m / 1e6:g}M" for m in args.at)
    print(f"\n| variant | change | 100-episode mean at {marks} env steps | last | env steps | env steps/s |")
    print("|---|---|---|---|---|---|")
    for name, out in done:
        print(row(name, out, args.at))
    if args.figure:
        from distrl.plot import plot

        plot([out for _, out in done], args.figure, labels=[n for n, _ in done], title=f"A/B on {args.config}")
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
