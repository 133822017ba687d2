"""The run's counters, its episode windows and its stop rules: the one module that writes
them. The pool counts fragments and replaced workers here, the trainer counts updates, lost
steps and restarted actors; nobody else assigns a counter. A report is derived from the
counters, so a new counter is one field of ``Counters`` (plus its line in docs/design.md,
"Output of a run"): it is then kept across --resume, written to every report and listed in
``metrics.CONTRACT_FIELDS``."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from distrl.errors import DistrlError
from distrl.runtime.phases import PhaseTotals

if TYPE_CHECKING:  # the learner's module imports torch and Ray; this one stays light for metrics.py
    from distrl.runtime.learner import UpdateReport

RETURN_WINDOW = 100  # episode_return_mean is over the last 100 episodes


class NonFiniteLoss(DistrlError):
    """The learner kept getting NaN or Inf losses; the run stops with its weights intact."""


@dataclass
class Counters:
    """Totals over the whole run, carried across --resume; each is a field of every report."""

    time_s: float = 0.0
    env_steps: int = 0
    env_frames: int = 0
    episodes: int = 0
    learner_updates: int = 0
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
    # Fragments the driver received: the unit of its work (scripts/bench.py --driver-cost).
    fragments: int = 0


COUNTER_NAMES = tuple(field.name for field in fields(Counters))

# progress.jsonl fields every report carries (docs/design.md, "Output of a run"): every
# counter, and what each report derives from them and from the pool.
CONTRACT_FIELDS = (
    *COUNTER_NAMES,
    "episode_return_mean",
    "env_steps_per_s",
    "policy_lag_mean",
    "num_workers",
    "num_nodes",
)


def restart_counter(kind: str) -> str:
    """The counter of restarts of one kind of actor (``worker``, ``replay_shard``, ...)."""
    name = f"{kind}_restarts"
    if name not in COUNTER_NAMES:
        raise ValueError(f"no counter for restarts of {kind!r}: add {name} to runtime/tally.py's Counters")
    return name


class Tally:
    """Counters, the last 100 episodes' returns, lengths and env metrics, and the learner's
    statistics since the last report."""

    def __init__(self, config: Any, resume_state: Optional[dict[str, Any]] = None):
        state = resume_state or {}
        self.stop = config.stop
        self.max_nonfinite = config.runtime.max_nonfinite_updates
        self.counters = Counters(**state.get("counters", {}))
        self.recent_returns: deque[float] = deque(state.get("recent_returns", []), maxlen=RETURN_WINDOW)
        self.recent_lengths: deque[float] = deque(state.get("recent_lengths", []), maxlen=RETURN_WINDOW)
        # The env's own episode metrics (info["episode_metrics"]), each over the last 100
        # episodes that reported it: an env may report a metric in some episodes only.
        self.recent_metrics: dict[str, deque[float]] = {
            name: deque(values, maxlen=RETURN_WINDOW) for name, values in state.get("recent_metrics", {}).items()
        }
        self.phases = PhaseTotals()  # where this process's part of the run spent its time
        self.learner_stats: dict[str, list[float]] = {}
        self.lags: list[float] = []
        self.waiting_env_steps = 0  # steps of fragments received and not yet in an update
        self.nonfinite_in_a_row = 0  # as the learner's last report said
        self.last_nonfinite_step = 0
        self.time_base = self.counters.time_s
        self.started = time.monotonic()
        self.last_report_time = self.started
        self.last_report_steps = self.start_steps = self.counters.env_steps

    def start_clock(self) -> None:
        self.time_base = self.counters.time_s
        self.started = self.last_report_time = time.monotonic()
        self.last_report_steps = self.start_steps = self.counters.env_steps

    # ------------------------------------------------------------------ counting

    def fragment(self, summary: dict[str, Any]) -> None:
        """A worker's summary of one fragment: its steps, frames and finished episodes."""
        counters = self.counters
        counters.env_steps += summary["env_steps"]
        counters.fragments += 1
        counters.env_frames += summary["env_frames"]
        counters.episodes += len(summary["episode_returns"])
        counters.env_restarts += summary.get("env_restarts", 0)
        self.recent_returns.extend(summary["episode_returns"])
        self.recent_lengths.extend(summary["episode_lengths"])
        for metrics in summary.get("episode_metrics", ()):
            for name, value in metrics.items():
                self.recent_metrics.setdefault(name, deque(maxlen=RETURN_WINDOW)).append(value)
        self.phases.add("worker", summary.get("phases"))

    def update(self, report: "UpdateReport", sent_steps: Optional[int] = None) -> None:
        """A finished update. ``sent_steps``: the env steps of the fragments it was given
        (fragment flows); those it did not learn from were lost with their node."""
        counters = self.counters
        counters.consumed_env_steps += report.consumed_steps
        if sent_steps is not None:
            counters.lost_env_steps += sent_steps - report.consumed_steps
        counters.skipped_gradient_steps += report.skipped_steps
        self.phases.add("learner", report.phases)
        self.nonfinite_in_a_row = report.nonfinite_in_a_row
        if report.skipped_steps:
            self.last_nonfinite_step = counters.env_steps
        if not report.updates:
            return  # nothing learned (every fragment lost, or nothing to sample yet)
        counters.learner_updates += report.updates
        self.lags.append(report.policy_lag)
        for key, value in report.stats.items():
            if isinstance(value, (int, float)):
                self.learner_stats.setdefault(key, []).append(float(value))

    def lost(self, env_steps: int) -> None:
        """Steps of counted fragments that no update will learn from (a learner died with them)."""
        self.counters.lost_env_steps += env_steps

    def restarted(self, kind: str, count: int = 1) -> int:
        """``count`` more restarts of ``kind`` (``worker``, ``learner``, ``replay_shard``, ...);
        returns the total so far."""
        name = restart_counter(kind)
        total = getattr(self.counters, name) + count
        setattr(self.counters, name, total)
        return total

    def applied_updates(self, updates: int) -> None:
        """The learner's own count of updates, when it is ahead of this one (an update applied
        that this driver had not collected yet, when a checkpoint is taken)."""
        self.counters.learner_updates = max(self.counters.learner_updates, updates)

    def driver_time(self, phases: dict[str, float]) -> None:
        """The driver's own seconds by phase (``wait``, ``duties``, ``flow``) since the last call."""
        self.phases.add("driver", phases)

    def set_waiting(self, env_steps: int) -> None:
        self.waiting_env_steps = env_steps

    def clock(self) -> float:
        """The run's time so far (across --resume), kept in ``counters.time_s``."""
        self.counters.time_s = self.time_base + (time.monotonic() - self.started)
        return self.counters.time_s

    # ------------------------------------------------------------------ rules

    def episode_return_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else math.nan

    def stop_reason(self, evaluation: Optional[dict[str, Any]] = None) -> Optional[str]:
        """The stop rule that holds, if any. ``evaluation``: the newest finished round."""
        stop, counters = self.stop, self.counters
        if stop.env_steps is not None and counters.env_steps >= stop.env_steps:
            return f"env_steps {counters.env_steps} >= {stop.env_steps}"
        if stop.reward is not None and stop.on == "eval":
            if evaluation is not None and evaluation["return_mean"] >= stop.reward:
                return (
                    f"eval_return_mean {evaluation['return_mean']:.2f} >= {stop.reward} "
                    f"(weights of env step {evaluation['env_steps']:,})"
                )
        elif (
            stop.reward is not None
            and len(self.recent_returns) >= RETURN_WINDOW
            and self.episode_return_mean() >= stop.reward
        ):
            return f"episode_return_mean {self.episode_return_mean():.2f} >= {stop.reward}"
        if stop.seconds is not None and self.clock() >= stop.seconds:
            return f"time {counters.time_s:.0f}s >= {stop.seconds}s"
        return None

    def nonfinite_error(self, checkpoint: str) -> Optional[NonFiniteLoss]:
        """The error that ends the run once the learner skipped ``runtime.max_nonfinite_updates``
        updates in a row for NaN or Inf losses (None before that)."""
        if self.nonfinite_in_a_row < self.max_nonfinite:
            return None
        return NonFiniteLoss(
            f"The learner's last {self.nonfinite_in_a_row} updates had a NaN or Inf loss or gradient (the last "
            f"at env step {self.last_nonfinite_step:,}), and each such step was skipped, so the weights are "
            f"those after the last finite step; they are in checkpoint {checkpoint!r}. Look for NaN or Inf in "
            f"the env's rewards or observations, or lower the learning rate; --resume continues from that "
            f"checkpoint."
        )

    # ------------------------------------------------------------------ reports

    def report(self, processes: dict[str, int], **fields_: Any) -> dict[str, Any]:
        """A report record: every counter, the window means and rates since the last report,
        where the time went since training started (``processes``: how many processes of
        each kind, runtime/phases.py), and ``fields_`` (the pool's size, the learner's
        version, evaluation). Starts the next report's interval."""
        now = time.monotonic()
        self.clock()
        elapsed = max(now - self.last_report_time, 1e-9)
        record: dict[str, Any] = asdict(self.counters)
        record["time_s"] = round(self.counters.time_s, 3)
        record.update(
            episode_return_mean=self.episode_return_mean(),
            episode_length_mean=float(np.mean(self.recent_lengths)) if self.recent_lengths else math.nan,
            env_steps_per_s=(self.counters.env_steps - self.last_report_steps) / elapsed,
            policy_lag_mean=float(np.mean(self.lags)) if self.lags else 0.0,
            waiting_env_steps=self.waiting_env_steps,
            **fields_,
            learner={key: float(np.mean(values)) for key, values in self.learner_stats.items()},
        )
        if self.recent_metrics:
            record["episode_metrics"] = {name: float(np.mean(values)) for name, values in self.recent_metrics.items()}
        record.update(self.phases.table(now - self.started, self.counters.env_steps - self.start_steps, processes))
        self.last_report_time = now
        self.last_report_steps = self.counters.env_steps
        self.learner_stats = {}
        self.lags = []
        return record

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the tally."""
        counters = asdict(self.counters)
        # A resumed run starts with nothing queued: what waits now will never be learned from.
        counters["lost_env_steps"] += self.waiting_env_steps
        return {
            "counters": counters,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
            "recent_metrics": {name: list(values) for name, values in self.recent_metrics.items()},
        }
