"""Run output: ``progress.jsonl`` (the contract tools and tests read), TensorBoard events
under ``tb/``, a Weights & Biases run (``output.wandb``), and a live console bar or one line
per report. TensorBoard and W&B get the same scalars, named by :func:`scalars`."""

from __future__ import annotations

import json
import math
import secrets
import string
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from distrl.errors import ConfigError, DistrlError

# The progress.jsonl fields every report carries (docs/design.md, "Output of a run"), derived
# from the run's counters.
from distrl.runtime.tally import CONTRACT_FIELDS as CONTRACT_FIELDS

if TYPE_CHECKING:
    from distrl.config import Config

# TensorBoard tags, grouped as CleanRL groups them so every algorithm's page looks alike.
_CHART_TAGS = {
    "episode_return_mean": "charts/episode_return_mean",
    "episode_length_mean": "charts/episode_length_mean",
    "env_steps_per_s": "charts/env_steps_per_s",
    "policy_lag_mean": "charts/policy_lag_mean",
    "num_workers": "charts/num_workers",
    "worker_restarts": "charts/worker_restarts",
    # With eval.every_env_steps: the newest evaluation round (runtime/evaluator.py).
    "eval_return_mean": "charts/eval_return_mean",
    "eval_return_std": "charts/eval_return_std",
}

# The file in a run folder that keeps its W&B run id, so that --resume logs to the same run.
WANDB_ID_FILE = "wandb_run_id"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The charted values of a report record by tag, as TensorBoard and W&B both log them at
    step ``record["env_steps"]``: the ``_CHART_TAGS`` fields as ``charts/...``, the
    learner's statistics as ``losses/...``, the env's own episode metrics as
    ``episode/...`` and each phase's share of its processes' time as ``phases/...``.
    Values that are missing, NaN or infinite are left out."""
    values = {tag: float(record[key]) for key, tag in _CHART_TAGS.items() if _finite(record.get(key))}
    values.update({f"losses/{key}": float(value) for key, value in record.get("learner", {}).items() if _finite(value)})
    values.update(
        {f"episode/{key}": float(value) for key, value in record.get("episode_metrics", {}).items() if _finite(value)}
    )
    # Where the time goes (runtime/phases.py): each phase's share of its processes' time.
    values.update(
        {
            f"phases/{name}": float(entry["share"])
            for name, entry in (record.get("phases") or {}).items()
            if _finite(entry.get("share"))
        }
    )
    return values


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _start_wandb(out_dir: Path, config: Config) -> Any:
    """A W&B run for ``output.wandb``, under ``OUT/wandb/``, with the run's resolved config.
    Its id is kept in ``OUT/wandb_run_id``: a resumed run (same folder) goes on logging to it."""
    wb = config.output.wandb
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            f"output.wandb.project is set ({wb.project!r}), but the wandb package is not installed: "
            f"pip install 'distrl[wandb]' (or leave output.wandb.project unset)."
        ) from None
    id_file = out_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else ""
    if not run_id:
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        id_file.write_text(run_id + "\n")
    try:
        if wb.mode != "online":
            # wandb's own usage analytics follow the process-wide settings, not the run's: an
            # offline run would still contact the W&B server (wandb 0.31) without this.
            wandb.setup(settings=wandb.Settings(mode=typing.cast(Any, wb.mode)))
        return wandb.init(
            project=wb.project,
            entity=wb.entity,
            mode=typing.cast(Any, wb.mode),
            group=wb.group,
            tags=list(wb.tags) or None,
            dir=str(out_dir),
            config=config.to_dict(),
            name=out_dir.resolve().name,
            id=run_id,
            resume="allow",
            # The console is distrl's: no W&B banners (silent), and stdout/stderr are left
            # alone rather than captured (console="off"), so the live bar keeps working.
            settings=wandb.Settings(silent=True, console="off"),
        )
    except wandb.errors.Error as error:
        raise DistrlError(
            f"W&B could not start a run in project {wb.project!r} (output.wandb): {error} "
            f"Without a W&B login or network, log offline: --set output.wandb.mode=offline, and upload "
            f"later with `wandb sync {out_dir}/wandb/offline-run-*`."
        ) from None


def _wandb_note(run: Any, out_dir: Path) -> str:
    if run.settings.mode == "offline":
        return (
            f"W&B: offline run {run.id} in {Path(run.dir).parent}; upload it with "
            f"`wandb sync {out_dir}/wandb/offline-run-*`"
        )
    if run.settings.mode == "disabled":
        return "W&B: output.wandb.mode is disabled; nothing is logged to W&B"
    return f"W&B: run {run.id} at {run.url}"


class MetricsWriter:
    def __init__(
        self,
        out_dir: Path,
        tensorboard: bool,
        console: str,
        total_env_steps: Optional[int],
        config: Optional[Config] = None,
    ):
        """``config``: the run's config; with ``output.wandb.project`` set, the scalars also go
        to a W&B run (none without a config)."""
        # W&B first: when it cannot start (not installed, not logged in) nothing is open yet.
        self.wandb_run = _start_wandb(out_dir, config) if config is not None and config.output.wandb.project else None
        self.progress_file = open(out_dir / "progress.jsonl", "a", buffering=1)
        self.tb_writer = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self.tb_writer = SummaryWriter(str(out_dir / "tb"), flush_secs=10)
        if console == "auto":
            console = "bar" if sys.stderr.isatty() else "lines"
        self.console = console
        self.bar = None
        if console == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total_env_steps, unit=" steps", unit_scale=True, dynamic_ncols=True)
        if self.wandb_run is not None:
            # W&B drops (with a warning each time) rows below the step it is at: an online run
            # resumed from a checkpoint older than its last report repeats steps it already has.
            self.wandb_from_step = self.wandb_run.step
            self.message(_wandb_note(self.wandb_run, out_dir))

    def write(self, record: dict[str, Any]) -> None:
        self.progress_file.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        step = record["env_steps"]
        values = scalars(record)
        if self.tb_writer is not None:
            for tag, value in values.items():
                self.tb_writer.add_scalar(tag, value, step)
        if self.wandb_run is not None and values and step >= self.wandb_from_step:
            self.wandb_run.log(values, step=step)
        self._console(record)

    def _console(self, record: dict[str, Any]) -> None:
        ret_text = _number(record["episode_return_mean"])
        # The phase that bounds the run, with its share of its processes' time.
        bound = record.get("bound")
        bound_text = f"  bound {bound} {record['phases'][bound]['share']:.0%}" if bound else ""
        # With evaluation on, its newest round follows the training return.
        eval_text = f"  eval {_number(record['eval_return_mean']):>8}" if "eval_return_mean" in record else ""
        if self.bar is not None:
            self.bar.n = record["env_steps"]
            self.bar.set_postfix_str(
                f"steps/s {record['env_steps_per_s']:,.0f}  return {ret_text}{eval_text.replace('  ', ' ', 1)}  "
                f"episodes {record['episodes']}{bound_text}"
            )
            self.bar.refresh()
        elif self.console == "lines":
            print(
                f"[{record['time_s']:8.1f}s] steps {record['env_steps']:>11,}  "
                f"steps/s {record['env_steps_per_s']:>8,.0f}  return {ret_text:>8}{eval_text}  "
                f"episodes {record['episodes']:>6}  updates {record['learner_updates']:>6}  "
                f"lag {record['policy_lag_mean']:.2f}  workers {record['num_workers']}{bound_text}",
                flush=True,
            )

    def message(self, text: str) -> None:
        """A line for the user that does not break the live bar."""
        if self.bar is not None:
            self.bar.write(text)
        elif self.console != "off":
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb_writer is not None:
            self.tb_writer.close()
        if self.wandb_run is not None:
            # Called from the trainer's `finally`: an exception on its way out (not Ctrl-C,
            # which ends a run with a checkpoint) marks the W&B run as failed.
            error = sys.exc_info()[1]
            failed = error is not None and not isinstance(error, KeyboardInterrupt)
            self.wandb_run.finish(exit_code=1 if failed else 0)
            self.wandb_run = None
        self.progress_file.close()
