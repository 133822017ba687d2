"""Failures inside actors, turned into one paragraph for the user (``DistrlError``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from distrl import checkpoint
from distrl.errors import DistrlError
from distrl.runtime import backend


def task_failure(error: BaseException, context: str) -> DistrlError:
    """A failure inside an actor as one paragraph: the user-facing error raised there as it
    is, anything else as ``context`` plus the original exception's type and message (not
    Ray's header line with the remote traceback)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, DistrlError):
        return cause
    if cause is not None:
        return DistrlError(f"{context}: {type(cause).__name__}: {str(cause).strip()}")
    return DistrlError(f"{context}: {first_line(error)}")


def first_line(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    if cause is not None and not isinstance(error, RayActorError):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class LearnerRestarted(Exception):
    """A call reached a learner that Ray restarted and the driver has not restored yet."""


class LearnerDied(DistrlError):
    """The learner's process died during a call (a restarted one has lost its state)."""


def learner_died(out_dir: Path, why: str = "its process was killed or its node left the cluster") -> LearnerDied:
    latest = checkpoint.latest(out_dir)
    where = (
        f"the newest checkpoint is {latest}; continue with --resume {out_dir}"
        if latest
        else "no checkpoint was written yet"
    )
    return LearnerDied(
        f"The learner process died ({why}); the run cannot go on without it. {where[0].upper() + where[1:]}."
    )


def get_from_learner(ref: Any, out_dir: Path, context: str = "The learner's update failed") -> Any:
    """``ray.get`` of a learner call, its failures as ``DistrlError``."""
    try:
        return backend.get(ref)
    except RayActorError:
        raise learner_died(out_dir) from None
    except RayTaskError as error:
        if isinstance(error.cause, LearnerRestarted):  # sent while Ray restarted it: died all the same
            raise learner_died(out_dir) from None
        raise task_failure(error, context) from None
