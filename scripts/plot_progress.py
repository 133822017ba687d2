#!/usr/bin/env python
"""Learning curves from runs' ``progress.jsonl``: the 100-episode mean return against wall
clock (minutes) and against env steps, one line per run, into one PNG.

    python scripts/plot_progress.py runs/pong --out docs/img/pong_cpu.png --target 18

Needs matplotlib (``pip install 'distrl[plot]'``). The curves come from the run's own reports,
so what is plotted is what the run printed; nothing is smoothed beyond the run's 100-episode
window.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_reports(run: Path) -> list[dict]:
    path = run / "progress.jsonl" if run.is_dir() else run
    if not path.is_file():
        sys.exit(f"plot_progress: no progress.jsonl at {path}: give a run's output folder or the file itself.")
    reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in reports if r.get("episode_return_mean") is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run output folders (or progress.jsonl files)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: the folder names)")
    parser.add_argument("--target", type=float, help="draw the stop reward as a dashed line")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_progress: matplotlib is not installed; install it with `pip install 'distrl[plot]'`.")
    labels = args.labels or [run.name if run.is_dir() else run.parent.name for run in args.runs]
    if len(labels) != len(args.runs):
        sys.exit(f"plot_progress: {len(args.runs)} runs but {len(labels)} labels.")

    figure, (by_time, by_steps) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run, label in zip(args.runs, labels):
        reports = read_reports(run)
        if not reports:
            sys.exit(f"plot_progress: {run} has no report with finished episodes yet.")
        returns = [r["episode_return_mean"] for r in reports]
        by_time.plot([r["time_s"] / 60 for r in reports], returns, label=label)
        by_steps.plot([r["env_steps"] / 1e6 for r in reports], returns, label=label)
    for axis, name in ((by_time, "wall clock (minutes)"), (by_steps, "env steps (millions)")):
        axis.set_xlabel(name)
        axis.grid(alpha=0.3)
        if args.target is not None:
            axis.axhline(args.target, color="gray", linestyle="--", linewidth=1)
    by_time.set_ylabel("mean return, last 100 episodes")
    by_time.legend(loc="upper left")
    if args.title:
        figure.suptitle(args.title)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
