"""Run output: ``progress.jsonl`` (the contract tools and tests read), TensorBoard events
under ``tb/``, and a live console bar or one line per report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

# progress.jsonl fields every report carries (docs/design.md, "Output of a run").
CONTRACT_FIELDS = (
    "time_s",
    "env_steps",
    "env_frames",
    "episodes",
    "episode_return_mean",
    "env_steps_per_s",
    "learner_updates",
    "policy_lag_mean",
    "num_workers",
    "num_nodes",
    "worker_restarts",
    "skipped_gradient_steps",
    "env_restarts",
    "learner_restarts",
    "parameter_server_restarts",
    "replay_shard_restarts",
    "consumed_env_steps",
    "lost_env_steps",
)

# TensorBoard tags, grouped as CleanRL groups them so every algorithm's page looks alike.
_CHART_TAGS = {
    "episode_return_mean": "charts/episode_return_mean",
    "episode_length_mean": "charts/episode_length_mean",
    "env_steps_per_s": "charts/env_steps_per_s",
    "policy_lag_mean": "charts/policy_lag_mean",
    "num_workers": "charts/num_workers",
    "worker_restarts": "charts/worker_restarts",
}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    def __init__(self, out_dir: Path, tensorboard: bool, console: str, total_env_steps: Optional[int]):
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

    def write(self, record: dict[str, Any]) -> None:
        self.progress_file.write(json.dumps({k: _json_safe(v) for k, v in record.items()}) + "\n")
        step = record["env_steps"]
        if self.tb_writer is not None:
            for key, tag in _CHART_TAGS.items():
                value = record.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb_writer.add_scalar(tag, value, step)
            for key, value in record.get("learner", {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb_writer.add_scalar(f"losses/{key}", value, step)
        self._console(record)

    def _console(self, record: dict[str, Any]) -> None:
        ret = record["episode_return_mean"]
        ret_text = "n/a" if ret is None or not math.isfinite(ret) else f"{ret:.2f}"
        if self.bar is not None:
            self.bar.n = record["env_steps"]
            self.bar.set_postfix_str(
                f"steps/s {record['env_steps_per_s']:,.0f}  return {ret_text}  episodes {record['episodes']}"
            )
            self.bar.refresh()
        elif self.console == "lines":
            print(
                f"[{record['time_s']:8.1f}s] steps {record['env_steps']:>11,}  "
                f"steps/s {record['env_steps_per_s']:>8,.0f}  return {ret_text:>8}  "
                f"episodes {record['episodes']:>6}  updates {record['learner_updates']:>6}  "
                f"lag {record['policy_lag_mean']:.2f}  workers {record['num_workers']}",
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
        self.progress_file.close()
