"""Run bookkeeping on the driver: the counters, the episode window, the stop rules, and when
to report and checkpoint. It holds no Ray handle: the flows feed it summaries and update
reports, the trainer gives it the function that writes a checkpoint."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from distrl.checkpoint import CheckpointWriteError
from distrl.errors import DistrlError
from distrl.metrics import MetricsWriter
from distrl.runtime.learner import UpdateReport

RETURN_WINDOW = 100  # episode_return_mean is over the last 100 episodes


class NonFiniteLoss(DistrlError):
    """The learner kept getting NaN or Inf losses; the run stops with its weights intact."""


@dataclass
class Counters:
    """Totals over the whole run, carried across --resume."""

    env_steps: int = 0
    env_frames: int = 0
    episodes: int = 0
    learner_updates: int = 0
    time_s: float = 0.0
    worker_restarts: int = 0
    skipped_gradient_steps: int = 0  # for a NaN or Inf loss or gradient
    env_restarts: int = 0  # env copies built again after an exception or a crashed emulator
    learner_restarts: int = 0  # learner processes restarted by Ray and restored from a snapshot
    parameter_server_restarts: int = 0
    replay_shard_restarts: int = 0  # each comes back empty: what it held is lost
    # Steps of counted fragments the learner learned from (replay: transitions sampled), and
    # those it never will: lost with their node, or in the update of a learner that died.
    consumed_env_steps: int = 0
    lost_env_steps: int = 0


class Bookkeeping:
    def __init__(self, config: Any, metrics: MetricsWriter, resume_state: Optional[dict[str, Any]] = None):
        state = resume_state or {}
        self.stop = config.stop
        self.output = config.output
        self.metrics = metrics
        self.counters = Counters(**state.get("counters", {}))
        self.recent_returns: deque[float] = deque(state.get("recent_returns", []), maxlen=RETURN_WINDOW)
        self.recent_lengths: deque[float] = deque(state.get("recent_lengths", []), maxlen=RETURN_WINDOW)
        # The env's own episode metrics (info["episode_metrics"]), each over the last 100
        # episodes that reported it: an env may report a metric in some episodes only.
        self.recent_metrics: dict[str, deque[float]] = {
            name: deque(values, maxlen=RETURN_WINDOW) for name, values in state.get("recent_metrics", {}).items()
        }
        self._learner_stats: dict[str, list[float]] = {}
        self._lags: list[float] = []
        self.checkpoint: Callable[[], Path] = lambda: Path()  # set by the trainer once the learner exists
        self.max_nonfinite = config.runtime.max_nonfinite_updates
        self.snapshot: Callable[[], None] = lambda: None  # set by the trainer: copy the learner's state
        self.check_actors: Callable[[], None] = lambda: None  # set by the trainer: count restarted actors
        # Set by the trainer when eval.every_env_steps is on: asks for an evaluation round when
        # one is due, and returns a round that finished since the last call (else None).
        self.poll_evaluation: Callable[[int], Optional[dict[str, Any]]] = lambda env_steps: None
        self.on_report: Callable[[dict[str, Any]], None] = lambda record: None  # set by the trainer
        self.evaluating = config.eval.every_env_steps is not None
        self.evaluation: Optional[dict[str, Any]] = None  # the newest finished evaluation round
        self.snapshot_every_s = config.runtime.learner_snapshot_every_s
        self.latest_version = 0  # the newest weights version an update reported
        self.waiting_env_steps = 0  # steps of fragments received and not yet in an update (set by the flow)
        self.nonfinite_in_a_row = 0
        self.last_nonfinite_step = 0

    def start_clock(self) -> None:
        self._time_base = self.counters.time_s
        self._started = self._last_report = self._last_checkpoint = self._last_snapshot = time.monotonic()
        self._last_report_steps = self.counters.env_steps

    # ------------------------------------------------------------------ counting

    def count_fragment(self, summary: dict[str, Any]) -> None:
        """A worker's summary of one fragment: its steps, frames and finished episodes."""
        self.counters.env_steps += summary["env_steps"]
        self.counters.env_frames += summary["env_frames"]
        self.counters.episodes += len(summary["episode_returns"])
        self.recent_returns.extend(summary["episode_returns"])
        self.recent_lengths.extend(summary["episode_lengths"])
        for metrics in summary.get("episode_metrics", ()):
            for name, value in metrics.items():
                self.recent_metrics.setdefault(name, deque(maxlen=RETURN_WINDOW)).append(value)
        self.counters.env_restarts += summary.get("env_restarts", 0)

    def record_update(self, report: UpdateReport, sent_steps: Optional[int] = None) -> None:
        """``sent_steps``: the env steps of the fragments the update was given (fragment
        flows); those it did not learn from were lost with their node."""
        if report.lost_fragments:
            self.metrics.message(
                f"{report.lost_fragments} fragment(s) were lost with their node; the update used the others"
            )
        self.counters.consumed_env_steps += report.consumed_steps
        if sent_steps is not None:
            self.counters.lost_env_steps += sent_steps - report.consumed_steps
        self.latest_version = max(self.latest_version, report.version)
        self.counters.skipped_gradient_steps += report.skipped_steps
        self.nonfinite_in_a_row = report.nonfinite_in_a_row
        if report.skipped_steps:
            self.last_nonfinite_step = self.counters.env_steps
        if not report.updates:
            return  # nothing learned (every fragment lost, or nothing to sample yet): nothing to record
        self.counters.learner_updates += report.updates
        self._lags.append(report.policy_lag)
        for key, value in report.stats.items():
            if isinstance(value, (int, float)):
                self._learner_stats.setdefault(key, []).append(float(value))

    # ------------------------------------------------------------------ rules

    def elapsed(self) -> float:
        return self._time_base + (time.monotonic() - self._started)

    def episode_return_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def stop_reason(self) -> Optional[str]:
        stop = self.stop
        if stop.env_steps is not None and self.counters.env_steps >= stop.env_steps:
            return f"env_steps {self.counters.env_steps} >= {stop.env_steps}"
        if stop.reward is not None and stop.on == "eval":
            if self.evaluation is not None and self.evaluation["return_mean"] >= stop.reward:
                return (
                    f"eval_return_mean {self.evaluation['return_mean']:.2f} >= {stop.reward} "
                    f"(weights of env step {self.evaluation['env_steps']:,})"
                )
        elif (
            stop.reward is not None
            and len(self.recent_returns) >= RETURN_WINDOW
            and self.episode_return_mean() >= stop.reward
        ):
            return f"episode_return_mean {self.episode_return_mean():.2f} >= {stop.reward}"
        if stop.seconds is not None and self.elapsed() >= stop.seconds:
            return f"time {self.elapsed():.0f}s >= {stop.seconds}s"
        return None

    def _report_due(self, now: float) -> bool:
        return now - self._last_report >= self.output.report_every_s

    def _checkpoint_due(self, now: float) -> bool:
        return now - self._last_checkpoint >= self.output.checkpoint_every_s

    def due(self) -> bool:
        """Will the next ``tick`` report, checkpoint or stop? (A flow that overlaps updates
        finishes the one in flight first, so that these count finished updates only.)"""
        now = time.monotonic()
        return self._report_due(now) or self._checkpoint_due(now) or self.stop_reason() is not None

    def tick(self, num_workers: int, num_nodes: int) -> Optional[str]:
        """After an update: report and checkpoint when due; returns the stop rule that holds.
        Raises NonFiniteLoss, after a last report and checkpoint, once the learner has skipped
        ``runtime.max_nonfinite_updates`` updates in a row for NaN or Inf losses."""
        now = time.monotonic()
        self.counters.time_s = self.elapsed()
        if self.nonfinite_in_a_row >= self.max_nonfinite:
            self.report(now, num_workers, num_nodes)
            path = self.checkpoint()
            raise NonFiniteLoss(
                f"The learner's last {self.nonfinite_in_a_row} updates had a NaN or Inf loss or gradient (the last "
                f"at env step {self.last_nonfinite_step:,}), and each such step was skipped, so the weights are "
                f"those after the last finite step; they are in checkpoint {str(path)!r}. Look for NaN or Inf in "
                f"the env's rewards or observations, or lower the learning rate; --resume continues from that "
                f"checkpoint."
            )
        evaluated = self.poll_evaluation(self.counters.env_steps)
        if evaluated is not None:
            self.evaluation = evaluated
        reason = self.stop_reason()
        # A finished evaluation round is reported at once: its point on the curve belongs
        # to the steps at which it was asked for, not to the next report's.
        if reason or self._report_due(now) or evaluated is not None:
            self.report(now, num_workers, num_nodes)
        if reason or self._checkpoint_due(now):
            try:
                self.checkpoint()
            except CheckpointWriteError as error:
                if reason:
                    raise  # the last checkpoint of the run: the run ends with the message
                self.metrics.message(
                    f"{error} Training goes on; the next checkpoint is due in {self.output.checkpoint_every_s:g} s."
                )
            self._last_checkpoint = self._last_snapshot = time.monotonic()  # a checkpoint is a snapshot too
        elif now - self._last_snapshot >= self.snapshot_every_s:
            self.snapshot()
            self._last_snapshot = time.monotonic()
        return reason

    def report(self, now: float, num_workers: int, num_nodes: int) -> None:
        self.check_actors()
        elapsed = max(now - self._last_report, 1e-9)
        record = {
            "time_s": round(self.counters.time_s, 3),
            "env_steps": self.counters.env_steps,
            "env_frames": self.counters.env_frames,
            "episodes": self.counters.episodes,
            "episode_return_mean": self.episode_return_mean(),
            "episode_length_mean": float(np.mean(self.recent_lengths)) if self.recent_lengths else math.nan,
            "env_steps_per_s": (self.counters.env_steps - self._last_report_steps) / elapsed,
            "learner_updates": self.counters.learner_updates,
            "policy_lag_mean": float(np.mean(self._lags)) if self._lags else 0.0,
            "num_workers": num_workers,
            "num_nodes": num_nodes,
            "worker_restarts": self.counters.worker_restarts,
            "skipped_gradient_steps": self.counters.skipped_gradient_steps,
            "env_restarts": self.counters.env_restarts,
            "learner_restarts": self.counters.learner_restarts,
            "parameter_server_restarts": self.counters.parameter_server_restarts,
            "replay_shard_restarts": self.counters.replay_shard_restarts,
            "consumed_env_steps": self.counters.consumed_env_steps,
            "lost_env_steps": self.counters.lost_env_steps,
            "learner_version": self.latest_version,
            "waiting_env_steps": self.waiting_env_steps,
            "learner": {key: float(np.mean(values)) for key, values in self._learner_stats.items()},
        }
        if self.recent_metrics:
            record["episode_metrics"] = {name: float(np.mean(values)) for name, values in self.recent_metrics.items()}
        if self.evaluating:
            record.update(self._evaluation_fields())
        self.metrics.write(record)
        self.on_report(record)
        self._last_report = now
        self._last_report_steps = self.counters.env_steps
        self._learner_stats = {}
        self._lags = []

    def _evaluation_fields(self) -> dict[str, Any]:
        """The newest evaluation round, in every report once evaluation is on (NaN before the
        first round finishes): ``eval_env_steps`` is the step count at which its weights were
        taken, which lags the report's ``env_steps`` by the time the round took."""
        found = self.evaluation or {}
        return {
            "eval_return_mean": found.get("return_mean", math.nan),
            "eval_return_std": found.get("return_std", math.nan),
            "eval_episodes": found.get("episodes", 0),
            "eval_env_steps": found.get("env_steps"),
            "eval_version": found.get("version"),
        }

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the bookkeeping."""
        from dataclasses import asdict

        counters = asdict(self.counters)
        # A resumed run starts with nothing queued: what waits now will never be learned from.
        counters["lost_env_steps"] += self.waiting_env_steps
        return {
            "counters": counters,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "recent_metrics": {name: list(values) for name, values in self.recent_metrics.items()},
        }
