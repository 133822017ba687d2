"""How long a run takes to start and to finish, part by part: OUT/startup.json.

A small job (PPO on CartPole) trains in 15 s, and a user compares the whole process with
a one-process library's, so the seconds before the first env step and after the stop rule
matter as much as the training rate. The trainer marks the end of each part of its set-up
and of its shutdown; the first part runs from the process's launch (the interpreter's start,
imports, reading the config), as the OS recorded it. What comes after the file is written
(the interpreter's own exit) is not in it: ``scripts/bench.py --startup`` times the whole
process from outside and reports that rest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def process_launched() -> float:
    """The wall-clock time this process was started (psutil, which Ray installs, reads it
    from the OS); now, if it cannot be read."""
    try:
        import psutil

        return float(psutil.Process(os.getpid()).create_time())
    except Exception:  # no psutil, or a platform without the figure
        return time.time()


class StartupClock:
    """Marks the end of each part of a run's start (``mark``) and of its finish (``mark_end``,
    after ``stopping``)."""

    def __init__(self) -> None:
        self.launched = process_launched()
        self.start: dict[str, float] = {}
        self.finish: dict[str, float] = {}
        self.last = self.launched
        self.stopped_at: float | None = None
        self.training_s = 0.0  # from the end of the start to the stop rule

    def mark(self, part: str) -> None:
        now = time.time()
        self.start[part] = self.start.get(part, 0.0) + now - self.last
        self.last = now

    def stopping(self) -> None:
        """The stop rule held (or Ctrl-C came): what follows is the run's finish."""
        if self.stopped_at is None:
            self.stopped_at = time.time()
            self.training_s, self.last = self.stopped_at - self.last, self.stopped_at

    def mark_end(self, part: str) -> None:
        if self.stopped_at is None:
            return  # the run failed before it stopped: no finish to time
        now = time.time()
        self.finish[part] = self.finish.get(part, 0.0) + now - self.last
        self.last = now

    def record(self) -> dict[str, Any]:
        return {
            "start": {part: round(seconds, 3) for part, seconds in self.start.items()},
            "launch_to_training_s": round(sum(self.start.values()), 3),
            "training_s": round(self.training_s, 3),
            "finish": {part: round(seconds, 3) for part, seconds in self.finish.items()},
            "stop_to_end_s": round(sum(self.finish.values()), 3),
        }

    def write(self, out_dir: Path) -> None:
        try:
            (out_dir / "startup.json").write_text(json.dumps(self.record(), indent=1) + "\n")
        except OSError:
            pass  # a timing file is not worth failing a finished run over
