"""Learning curves from runs' ``progress.jsonl`` (``distrl plot``): the 100-episode mean
return against env steps and against wall clock, into one PNG.

Runs whose configs differ only in seed and output folder are one experiment: they are drawn
as their mean with a band from the lowest to the highest run, so a figure shows the spread
over seeds rather than one lucky run. What is plotted is what the runs reported; nothing is
smoothed beyond the runs' own 100-episode window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from distrl.errors import ConfigError, DistrlError

# Points on the shared x grid that a group of runs is resampled to.
GRID_POINTS = 200


@dataclass
class Run:
    path: Path
    steps: np.ndarray
    minutes: np.ndarray
    returns: np.ndarray
    # The run's config without what differs between seeds of one experiment; None when the
    # folder has no config.yaml (a bare progress.jsonl), and then the run stands alone.
    experiment: Optional[str]
    title: str


def read_run(path: Path) -> Run:
    """A run folder (or its progress.jsonl): the reports that have a finished episode."""
    progress = path / "progress.jsonl" if path.is_dir() else path
    if not progress.is_file():
        raise ConfigError(f"No progress.jsonl at {str(progress)!r}: give a run's output folder or the file itself.")
    reports = []
    for number, line in enumerate(progress.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(
                f"{progress}, line {number}, is not JSON: is this a distrl run's progress.jsonl?"
            ) from None
        if report.get("episode_return_mean") is not None:
            reports.append(report)
    if not reports:
        raise ConfigError(f"{str(progress)!r} has no report with a finished episode yet: nothing to plot.")
    experiment, title = None, progress.parent.name
    config_file = progress.parent / "config.yaml"
    if config_file.is_file():
        config = yaml.safe_load(config_file.read_text()) or {}
        title = f"{config.get('algo', '?')} on {(config.get('env') or {}).get('id', '?')}"
        config.pop("seed", None)
        (config.get("output") or {}).pop("dir", None)
        experiment = yaml.safe_dump(config, sort_keys=True)
    return Run(
        path=progress.parent,
        steps=np.array([r["env_steps"] for r in reports], dtype=np.float64),
        minutes=np.array([r["time_s"] / 60 for r in reports], dtype=np.float64),
        returns=np.array([r["episode_return_mean"] for r in reports], dtype=np.float64),
        experiment=experiment,
        title=title,
    )


def group_runs(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs of one experiment together, in the order each experiment first appears."""
    groups: dict[Any, list[Run]] = {}
    for index, run in enumerate(runs):
        key = run.experiment if run.experiment is not None else ("alone", index)
        groups.setdefault(key, []).append(run)
    return list(groups.values())


def band(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Several curves resampled to one grid: x, mean, low, high. A run that stopped early
    (say, it reached the stop reward) keeps its last value, so that the mean does not jump
    when the better runs leave it."""
    end = max(float(x[-1]) for x in xs)
    start = min(float(x[0]) for x in xs)
    grid = np.linspace(start, end, GRID_POINTS)
    # Before its first report a run has no value yet; np.interp holds the first one there.
    resampled = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    return grid, resampled.mean(0), resampled.min(0), resampled.max(0)


def plot(
    paths: Sequence[Path],
    out: Path,
    labels: Optional[Sequence[str]] = None,
    target: Optional[float] = None,
    title: str = "",
    baselines: Optional[dict[str, float]] = None,
) -> list[str]:
    """Draws the figure and returns one line per curve (label, runs, final mean return)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DistrlError("distrl plot needs matplotlib: pip install 'distrl[plot]'.") from None
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"The figure goes to a .png, .svg or .pdf file; got {str(out)!r}.")
    groups = group_runs([read_run(Path(path)) for path in paths])
    if labels is not None and len(labels) != len(groups):
        raise ConfigError(
            f"{len(labels)} labels for {len(groups)} curves: give one label per curve (runs whose "
            f"configs differ only in seed are one curve)."
        )

    largest = max(float(run.steps[-1]) for group in groups for run in group)
    scale, unit = (1e6, "millions") if largest >= 1e6 else (1e3, "thousands")
    titles = [group[0].title for group in groups]
    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    summary = []
    for index, group in enumerate(groups):
        label = labels[index] if labels is not None else titles[index]
        if labels is None and titles.count(label) > 1:  # tell like-named experiments apart
            label += f" ({group[0].path.name})"
        if len(group) > 1:
            label += f" (mean of {len(group)}, band: min-max)"
        color = f"C{index % 10}"
        finals = [float(run.returns[-1]) for run in group]
        for axis, xs in ((by_steps, [run.steps / scale for run in group]), (by_time, [run.minutes for run in group])):
            if len(group) == 1:
                axis.plot(xs[0], group[0].returns, color=color, label=label)
            else:
                grid, mean, low, high = band(xs, [run.returns for run in group])
                axis.plot(grid, mean, color=color, label=label)
                axis.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
        summary.append(
            f"{label}: {len(group)} run(s), final 100-episode mean "
            + (
                f"{finals[0]:.2f}"
                if len(finals) == 1
                else f"{np.mean(finals):.2f} (min {min(finals):.2f}, max {max(finals):.2f})"
            )
        )
    by_steps.set_xlabel(f"env steps ({unit})")
    by_time.set_xlabel("wall clock (minutes)")
    for axis in (by_steps, by_time):
        axis.grid(alpha=0.3)
        if target is not None:
            axis.axhline(target, color="gray", linestyle="--", linewidth=1)
        for index, (name, value) in enumerate((baselines or {}).items()):
            # Only the left axis carries legend entries.
            line_label: Optional[str] = f"{name} policy: {value:g}" if axis is by_steps else None
            axis.axhline(value, color="black", linestyle=(0, (1, 2 + index)), linewidth=1, label=line_label)
    by_steps.set_ylabel("mean return, last 100 episodes")
    by_steps.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return summary
