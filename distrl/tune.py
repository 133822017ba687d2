"""Hyperparameter sweeps on Ray Tune (``distrl tune``): every trial is a whole distrl run.

    distrl tune --config ppo_cartpole --grid ppo.lr=1e-4,3e-4 ppo.epochs=2,4 --seeds 3 \\
        --stop-env-steps 50000 --out sweeps/lr

Why Tune and not a loop of ``distrl train``: Tune places trials by their resources, runs as
many side by side as the cluster holds, and stops or samples them by its schedulers and
searchers. Each trial asks Tune for a placement group of the run's own shape (a small bundle
for the trial's driver, one for the learner, one per rollout worker), and the run's actors are
created inside it, so trials never take each other's CPUs. Results land in one place:
``OUT/trials.csv`` (a row per trial), ``OUT/summary.csv`` (a row per setting, over seeds),
``OUT/curves.png`` (each setting's mean curve with its min-max band over seeds) and
``OUT/best_config.yaml`` (the best setting, ready for ``distrl train --config``). The runs
themselves are in ``OUT/trials/<trial>/`` as ordinary distrl run folders.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from distrl.errors import ConfigError, DistrlError

# The trial's own process (the Tune function that drives the run) does little: a sliver of
# CPU keeps it from taking a core a worker or the learner was counted on.
DRIVER_CPUS = 0.01
RANDOM_KINDS = ("uniform", "loguniform")


@dataclass
class Axis:
    """One swept key: its values (a grid's, or those a random search picks from), or a range
    ``uniform:A:B`` / ``loguniform:A:B`` for random search."""

    key: str
    values: Optional[list[Any]] = None
    kind: Optional[str] = None
    low: float = 0.0
    high: float = 0.0

    def label(self, value: Any) -> str:
        return f"{self.key.rsplit('.', 1)[-1]}={value:g}" if isinstance(value, float) else f"{self.key}={value}"


def parse_axis(text: str) -> Axis:
    """``KEY=V1,V2,...`` or ``KEY=uniform:A:B`` / ``KEY=loguniform:A:B``; values are YAML
    scalars as in ``--set``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw:
        raise ConfigError(f"--grid takes KEY=V1,V2,... (or KEY=loguniform:A:B with --search random); got {text!r}.")
    kind, _, bounds = raw.partition(":")
    if kind in RANDOM_KINDS:
        try:
            low, high = (float(part) for part in bounds.split(":"))
        except ValueError:
            raise ConfigError(f"{text!r}: a range is {kind}:LOW:HIGH, two numbers.") from None
        if not low < high or (kind == "loguniform" and low <= 0):
            raise ConfigError(f"{text!r}: the range needs LOW < HIGH (and LOW > 0 for loguniform).")
        return Axis(key, kind=kind, low=low, high=high)
    values = [_scalar(part) for part in raw.split(",")]
    if any(value is None for value in values):
        raise ConfigError(f"{text!r}: an empty value in the list; write KEY=V1,V2 with no empty item.")
    return Axis(key, values=values)


# The progress fields each trial reports to Tune (its status table shows them); the run's
# progress.jsonl keeps every field.
REPORTED = ("env_steps", "time_s", "episode_return_mean", "eval_return_mean", "env_steps_per_s", "learner_updates")


def _scalar(text: str) -> Any:
    """A YAML scalar as ``--set`` reads it, except that 3e-4 is a number (YAML 1.1 wants 3.0e-4)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def distrl_run(params: dict[str, Any]) -> None:
    """One Tune trial: a distrl run of the base config with this trial's values, written to
    OUT/trials/<trial name>, reporting each progress record to Tune."""
    from ray import tune

    from distrl import api
    from distrl.config import set_dotted

    user = yaml.safe_load(params["base"])
    for key, value in params["values"].items():
        set_dotted(user, key, value)
    user["seed"] = params["seed"]
    run_dir = Path(params["out"]) / "trials" / tune.get_context().get_trial_name()
    set_dotted(user, "output.dir", str(run_dir))

    def report(record: dict[str, Any]) -> None:
        tune.report({**{key: record[key] for key in REPORTED if key in record}, "run_dir": str(run_dir)})

    api.run(user, on_report=report)


def _param_space(axes: Sequence[Axis], search: str, seeds: Sequence[int]) -> dict[str, Any]:
    from ray import tune

    values: dict[str, Any] = {}
    for axis in axes:
        if axis.values is not None:
            values[axis.key] = tune.grid_search(axis.values) if search == "grid" else tune.choice(axis.values)
        else:
            values[axis.key] = getattr(tune, axis.kind or "uniform")(axis.low, axis.high)
    return {"values": values, "seed": tune.grid_search(list(seeds))}


def _bundles(config: Any) -> list[dict[str, float]]:
    """The trial's placement group, in the order the run's actors are pinned to it
    (``cluster.in_bundle``): the trial's driver, the learner, one per rollout worker, and the
    evaluator's when it reserves CPUs. Ray refuses an empty bundle, so a share of 0 CPUs gets
    the driver's sliver, which an actor asking for none fits in too."""
    runtime = config.runtime
    learner: dict[str, float] = {"CPU": max(float(runtime.num_cpus_per_learner), DRIVER_CPUS)}
    if runtime.num_gpus_per_learner not in (0, "auto"):  # "auto" is settled before the bundles are made
        learner["GPU"] = float(runtime.num_gpus_per_learner)
    worker = {"CPU": max(float(runtime.num_cpus_per_worker), DRIVER_CPUS)}
    bundles = [{"CPU": DRIVER_CPUS}, learner] + [dict(worker) for _ in range(int(runtime.num_workers))]
    if config.eval.every_env_steps and config.eval.num_cpus:
        bundles.append({"CPU": float(config.eval.num_cpus)})
    return bundles


def sweep(
    user: dict[str, Any],
    axes: Sequence[Axis],
    out: Path,
    seeds: Sequence[int],
    search: str = "grid",
    num_samples: int = 1,
    metric: Optional[str] = None,
    address: Optional[str] = None,
    max_concurrent: int = 0,
) -> dict[str, Any]:
    """Run the sweep and write its table, plot and best config into ``out``; returns the
    summary (``best``: the best setting, ``rows``: one per trial)."""
    if search not in ("grid", "random"):
        raise ConfigError(f"--search is grid or random; got {search!r}.")
    if search == "grid" and any(axis.values is None for axis in axes):
        raise ConfigError("A range (uniform:A:B, loguniform:A:B) needs --search random; a grid takes value lists.")
    if not seeds:
        raise ConfigError("--seeds must be at least 1.")
    try:
        from ray import tune
    except ImportError:
        raise DistrlError("distrl tune runs on Ray Tune, which is not installed: pip install 'distrl[tune]'.") from None
    from distrl.api import prepare
    from distrl.config import set_dotted
    from distrl.runtime import cluster

    out = out.resolve()
    if (out / "trials").exists():
        raise ConfigError(f"{str(out)!r} already holds a sweep; choose another --out.")
    for axis in axes:  # every swept value must make a valid config before any trial starts
        for value in axis.values or [axis.low, axis.high]:
            probe = yaml.safe_load(yaml.safe_dump(user))
            set_dotted(probe, axis.key, value)
            prepare(probe)
    config, note = prepare(yaml.safe_load(yaml.safe_dump(user)))
    if note and "Ctrl-C" in note:
        raise ConfigError(
            "A sweep needs a stop rule for its trials: --stop-env-steps, --stop-seconds or --stop-reward."
        )
    if config.runtime.num_workers == "auto":
        raise ConfigError(
            "A sweep gives each trial a fixed share of the cluster: set runtime.num_workers to a number, not auto."
        )
    if config.runtime.mode == "serial":
        raise ConfigError(
            "A sweep runs its trials as Ray tasks side by side; runtime.mode=serial is for one run in one "
            "process (`distrl train --serial`). Drop it from the sweep's config."
        )
    if config.runtime.num_learners > 1:
        raise ConfigError(
            "A sweep places each trial's actors in a placement group of one learner bundle; "
            f"runtime.num_learners={config.runtime.num_learners} is for single runs (`distrl train`). "
            "Drop it from the sweep's config."
        )
    metric = metric or ("eval_return_mean" if config.eval.every_env_steps else "episode_return_mean")

    if cluster.starts_embedded(address):
        cluster.prefer_loopback()
    import ray

    started = False
    if not ray.is_initialized():
        per_trial = sum(bundle.get("CPU", 0.0) for bundle in _bundles(config))
        started = cluster.connect(address, per_trial)
    try:
        if config.runtime.num_gpus_per_learner == "auto":
            user.setdefault("runtime", {})["num_gpus_per_learner"] = 1 if cluster.cluster_gpus() >= 1 else 0
            config, _ = prepare(yaml.safe_load(yaml.safe_dump(user)))
        trainable = tune.with_resources(distrl_run, tune.PlacementGroupFactory(_bundles(config)))
        space = {"base": yaml.safe_dump(user), "out": str(out), **_param_space(axes, search, seeds)}
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(
                num_samples=num_samples if search == "random" else 1, max_concurrent_trials=max_concurrent or None
            ),
            run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=1),
        )
        grid = tuner.fit()
    finally:
        if started:
            cluster.stop_embedded()
    return _write_results(grid, axes, out, metric)


def _write_results(grid: Any, axes: Sequence[Axis], out: Path, metric: str) -> dict[str, Any]:
    rows = []
    for result in grid:
        params = result.config
        metrics = result.metrics or {}
        run_dir = metrics.get("run_dir") or ""
        rows.append(
            {
                **{axis.key: params["values"][axis.key] for axis in axes},
                "seed": params["seed"],
                metric: metrics.get(metric, math.nan),
                "env_steps": metrics.get("env_steps"),
                "time_s": metrics.get("time_s"),
                "error": "" if result.error is None else str(result.error).strip().splitlines()[-1][:200],
                "run_dir": run_dir,
            }
        )
    if not rows:
        raise DistrlError("The sweep ran no trial.")
    keys = [axis.key for axis in axes]
    settings: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        settings.setdefault(tuple(repr(row[key]) for key in keys), []).append(row)
    summary = []
    for group in settings.values():
        finals = [float(row[metric]) for row in group if row[metric] is not None and math.isfinite(row[metric])]
        summary.append(
            {
                **{key: group[0][key] for key in keys},
                "seeds": len(group),
                f"{metric}_mean": float(np.mean(finals)) if finals else math.nan,
                f"{metric}_min": min(finals) if finals else math.nan,
                f"{metric}_max": max(finals) if finals else math.nan,
                "failed": sum(1 for row in group if row["error"]),
            }
        )
    summary.sort(key=lambda row: -np.inf if math.isnan(row[f"{metric}_mean"]) else row[f"{metric}_mean"], reverse=True)
    _write_csv(out / "trials.csv", rows)
    _write_csv(out / "summary.csv", summary)
    best = summary[0]
    best_dir = next(Path(row["run_dir"]) for row in rows if all(repr(row[k]) == repr(best[k]) for k in keys))
    best_config = yaml.safe_load((best_dir / "config.yaml").read_text()) if (best_dir / "config.yaml").is_file() else {}
    best_config.pop("seed", None)
    (best_config.get("output") or {}).pop("dir", None)
    header = (
        f"# The best setting of the sweep in {out}: {', '.join(f'{k}={best[k]}' for k in keys)}, "
        f"{metric} {best[f'{metric}_mean']:.2f} mean over {best['seeds']} seed(s).\n"
        f"#   distrl train --config {out / 'best_config.yaml'}\n"
    )
    (out / "best_config.yaml").write_text(header + yaml.safe_dump(best_config, sort_keys=False))
    curves = _plot(rows, summary, keys, out)
    return {"rows": rows, "summary": summary, "best": best, "metric": metric, "plot": curves}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot(rows: list[dict[str, Any]], summary: list[dict[str, Any]], keys: list[str], out: Path) -> Optional[Path]:
    """Each setting's runs as one curve (plot.py draws seeds of one config as a mean and band)."""
    from distrl.plot import plot

    paths, labels = [], []
    for setting in summary:
        group = [Path(row["run_dir"]) for row in rows if all(repr(row[k]) == repr(setting[k]) for k in keys)]
        group = [path for path in group if _has_reports(path)]
        if group:
            paths += group
            labels.append(", ".join(f"{key}={setting[key]}" for key in keys) or "base config")
    if not paths:
        return None
    target = out / "curves.png"
    try:
        plot(paths, target, labels=labels, title=f"sweep {out.name}")
    except DistrlError as error:  # a run with no finished episode, say
        print(f"distrl: no plot: {error}", flush=True)
        return None
    return target


def _has_reports(run_dir: Path) -> bool:
    progress = run_dir / "progress.jsonl"
    return progress.is_file() and progress.stat().st_size > 0


def format_table(result: dict[str, Any]) -> str:
    """The summary as aligned text: one row per setting, best first."""
    rows = result["summary"]
    columns = list(rows[0])
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}" if abs(value) < 1e-2 and value else f"{value:.2f}"
    return str(value)
