"""Where a run's time goes: each process times its own phases and the driver adds them up.

Every rollout worker, the learner and the driver split their own wall time into named
phases. Each worker and the learner time everything from the end of one call to the end of
the next: ``idle`` (waiting for the next request: the worker's fragment stored by Ray, the
driver or the learner slow to ask), the phases of the call, and ``other`` (the rest of the
call), so that a process's phases add up to the time it has been running. The driver times
its waits on workers and learner (``wait``), its duties (reports, checkpoints, snapshots)
and the rest of its loop (``flow``: requests and bookkeeping).

A phase's share is its seconds over the processes that run it (workers: the pool's size)
times the run's wall time since training started, over the whole run; its cost is its
seconds per 1,000 env steps. The bound is the busiest process kind's largest phase: what
would speed the run up if it took less. docs/design.md ("Where the time goes") explains how
to read them.
"""

from __future__ import annotations

import time
from typing import Any, Optional

# The phases each kind of process reports, in the order the report lists them. ``idle`` is a
# process waiting for work (the driver: ``wait``, blocked on workers and learner).
PHASES: dict[str, tuple[str, ...]] = {
    "worker": (
        "env_step",
        "forward",
        "weight_load",
        "gradient",
        "learner_wait",
        "replay_insert",
        "other",
        "idle",
    ),
    "learner": ("transfer", "replay_sample", "collate", "update", "publish", "other", "idle"),
    "driver": ("wait", "duties", "flow"),
}
IDLE = {"worker": "idle", "learner": "idle", "driver": "wait"}


class CallClock:
    """One process's clock over its calls: ``start`` a call, add its phases, ``finish`` it.
    The time since the previous call ended is ``idle``; what the phases leave of the call's
    own time is ``other``."""

    def __init__(self) -> None:
        self.last_end: Optional[float] = None
        self.started = 0.0

    def start(self) -> float:
        """The idle time before this call (0 for a process's first call: it was starting)."""
        now = time.perf_counter()
        idle = 0.0 if self.last_end is None else now - self.last_end
        self.started = now
        return idle

    def finish(self, phases: dict[str, float], idle: float) -> dict[str, float]:
        """``phases`` with ``other`` (the call's untimed rest) and ``idle`` added."""
        now = time.perf_counter()
        timed = sum(phases.values())
        self.last_end = now
        return {**phases, "other": max(0.0, now - self.started - timed), "idle": idle}


class PhaseTotals:
    """The seconds of each phase over the run, added up by the driver from the workers'
    summaries, the learner's reports and its own clock."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {kind: {} for kind in PHASES}

    def add(self, kind: str, phases: Optional[dict[str, float]]) -> None:
        if not phases:
            return
        totals = self.seconds[kind]
        for phase, seconds in phases.items():
            totals[phase] = totals.get(phase, 0.0) + float(seconds)

    def table(self, wall_s: float, env_steps: int, processes: dict[str, int]) -> dict[str, Any]:
        """``{"phases": {"worker.env_step": {"share": ..., "s_per_1k_steps": ...}, ...},
        "phase_coverage": {"worker": ...}, "bound": "learner.update"}`` over ``wall_s``
        seconds and ``env_steps`` steps, ``processes`` of each kind. A kind's coverage is the
        sum of its shares: 1 when its phases account for all of its time."""
        table: dict[str, dict[str, float]] = {}
        coverage: dict[str, float] = {}
        busiest: Optional[tuple[float, str]] = None
        for kind, names in PHASES.items():
            totals = self.seconds[kind]
            count = processes.get(kind, 0)
            if not totals or not count or wall_s <= 0:
                continue
            process_s = wall_s * count
            shares = {name: totals.get(name, 0.0) / process_s for name in names if name in totals}
            for name, share in shares.items():
                table[f"{kind}.{name}"] = {
                    "share": share,
                    "s_per_1k_steps": totals[name] / max(env_steps, 1) * 1000.0,
                }
            coverage[kind] = sum(shares.values())
            busy = coverage[kind] - shares.get(IDLE[kind], 0.0)
            work = {name: share for name, share in shares.items() if name != IDLE[kind]}
            if work and (busiest is None or busy > busiest[0]):
                busiest = (busy, f"{kind}.{max(work, key=lambda name: work[name])}")
        return {"phases": table, "phase_coverage": coverage, "bound": busiest[1] if busiest else None}


def table_text(record: dict[str, Any]) -> str:
    """The report's phase table as the lines the console prints when a run ends: each
    process kind's phases with their share of its time and seconds per 1,000 env steps,
    largest first, and the bound."""
    phases = record.get("phases") or {}
    if not phases:
        return ""
    lines = ["where the time went (share of each process's time; seconds per 1,000 env steps):"]
    for kind in PHASES:
        rows = sorted(
            ((name.split(".", 1)[1], row) for name, row in phases.items() if name.startswith(kind + ".")),
            key=lambda item: -item[1]["share"],
        )
        if not rows:
            continue
        coverage = record.get("phase_coverage", {}).get(kind)
        lines.append(f"  {kind}" + (f" (phases add up to {coverage:.0%})" if coverage is not None else ""))
        lines.extend(f"    {name:<14} {row['share']:6.1%} {row['s_per_1k_steps']:9.3f} s" for name, row in rows)
    if record.get("bound"):
        lines.append(f"  bound: {record['bound']}")
    return "\n".join(lines)
