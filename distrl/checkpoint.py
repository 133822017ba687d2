"""Checkpoints: written atomically, the last K kept, read back with ``weights_only=True``.

Layout::

    OUT/checkpoints/ckpt-00000123/state.pt     model, optimizer, counters, config
    OUT/checkpoints/ckpt-00000123/config.yaml  the run's resolved config, for people
    OUT/checkpoints/ckpt-00000123/meta.json    the counters, for people

A checkpoint is written into a temporary folder next to the others and renamed into
place, so a crash mid-write never leaves a half checkpoint under a real name, and an
existing checkpoint is never overwritten or deleted before a newer one is complete.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from distrl.errors import CheckpointError, DistrlError

FORMAT_VERSION = 1


class CheckpointWriteError(DistrlError):
    """A checkpoint could not be written (a full disk); the earlier ones are untouched."""


PREFIX = "ckpt-"


def _number(path: Path) -> int:
    try:
        return int(path.name[len(PREFIX) :])
    except ValueError:
        return -1


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and _number(p) >= 0]
    return sorted(found, key=_number)


def save(checkpoint_dir: Path, number: int, state: dict[str, Any], config_yaml: str, keep: int) -> Path:
    """Write checkpoint ``number`` (the learner update count) and keep the newest ``keep``."""
    final = checkpoint_dir / f"{PREFIX}{number:08d}"
    if final.exists():  # the same update was already saved
        return final
    temporary: Optional[Path] = None  # a full disk may stop mkdtemp itself
    try:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=".tmp-", dir=checkpoint_dir))
        temporary.chmod(0o755)  # mkdtemp makes it private; a checkpoint is as readable as its run
        # Serialized in memory first: torch's own file writer turns a full disk into an
        # opaque "iostream error", where Python's gives OSError with its errno.
        buffer = io.BytesIO()
        torch.save({"format": FORMAT_VERSION, **state, "config_yaml": config_yaml}, buffer)
        with open(temporary / "state.pt", "wb") as handle:
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        (temporary / "config.yaml").write_text(config_yaml)
        (temporary / "meta.json").write_text(json.dumps(state.get("counters", {}), indent=2) + "\n")
        os.rename(temporary, final)
    except OSError as error:  # a full disk, a quota, a folder gone read-only
        _remove(temporary)
        previous = list_checkpoints(checkpoint_dir)
        kept = f"the previous one, {str(previous[-1])!r}, is intact" if previous else "there is no earlier one"
        raise CheckpointWriteError(
            f"Could not write checkpoint {final.name} in {str(checkpoint_dir)!r}: {error.strerror or error}; "
            f"{kept}. Free some space there (or train into another folder with --out) and --resume."
        ) from None
    except BaseException:
        _remove(temporary)
        raise
    # Keep the newest `keep`, counting the one just written; never touch a newer one.
    older = [p for p in list_checkpoints(checkpoint_dir) if _number(p) < number]
    for old in older[: max(0, len(older) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _remove(temporary: Optional[Path]) -> None:
    """Drop a checkpoint's unfinished temporary folder, if it was made."""
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


def find(path: str | Path) -> Path:
    """A checkpoint folder from a checkpoint folder, a run folder or a state.pt file."""
    path = Path(path)
    if path.is_file() and path.name == "state.pt":
        return path.parent
    if (path / "state.pt").is_file():
        return path
    candidates = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
    if candidates:
        return candidates[-1]
    if not path.exists():
        raise CheckpointError(f"No checkpoint at {str(path)!r}: the path does not exist.")
    raise CheckpointError(
        f"No checkpoint found in {str(path)!r}. Pass a run folder (holding checkpoints/) or one "
        f"checkpoint folder (holding state.pt)."
    )


def load(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only,
    so a checkpoint from elsewhere cannot run code on this machine."""
    folder = find(path)
    try:
        return folder, _read(folder)
    except _Unreadable as error:
        earlier = [p for p in list_checkpoints(folder.parent) if p != folder]
        hint = f" An earlier checkpoint is {str(earlier[-1])!r}; pass it to --resume." if earlier else ""
        raise CheckpointError(
            f"Checkpoint {str(folder / 'state.pt')!r} is unreadable ({error}). It may be truncated or not a "
            f"distrl checkpoint.{hint} Nothing was changed on disk."
        ) from None


def load_readable(path: str | Path) -> tuple[Path, dict[str, Any], list[tuple[Path, str]]]:
    """Like :func:`load`, but a run folder gives its newest checkpoint that loads (a crash or
    a full disk may have damaged the newest), together with the newer ones that did not load
    and why. A path to one checkpoint loads that one or fails."""
    path = Path(path)
    candidates = [] if (path / "state.pt").is_file() else list_checkpoints(path / "checkpoints")
    if not candidates:
        folder, state = load(path)
        return folder, state, []
    skipped: list[tuple[Path, str]] = []
    for folder in reversed(candidates):
        try:
            return folder, _read(folder), skipped
        except _Unreadable as error:
            skipped.append((folder, str(error)))
    raise CheckpointError(
        f"No checkpoint in {str(path)!r} is readable: "
        + "; ".join(f"{folder.name}: {reason}" for folder, reason in skipped)
        + ". Nothing was changed on disk."
    )


def set_aside(folder: Path) -> Path:
    """Rename an unreadable checkpoint out of the list (``unreadable-ckpt-N``), so that a run
    resumed from an earlier one can write its own checkpoint N; nothing is deleted."""
    target = folder.with_name(f"unreadable-{folder.name}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = folder.with_name(f"unreadable-{folder.name}-{suffix}")
    os.rename(folder, target)
    return target


class _Unreadable(Exception):
    """A checkpoint file torch could not read; the message says why."""


def _read(folder: Path) -> dict[str, Any]:
    state_file = folder / "state.pt"
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        raise _Unreadable(_reason(error)) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"Checkpoint {str(state_file)!r} has format {state.get('format') if isinstance(state, dict) else '?'}; "
            f"this distrl reads format {FORMAT_VERSION}."
        )
    return state


def _reason(error: Exception) -> str:
    """Why torch could not read a file, without torch's advice for the weights-only refusal
    (to load again with ``weights_only=False``), which would run whatever code a file of
    unknown origin holds."""
    text = str(error)
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds Python objects besides tensors and plain data, which distrl does not unpickle"
    return f"{type(error).__name__}: {text.splitlines()[0][:200] if text else 'no detail'}"


def number_of(path: Path) -> int:
    return _number(path)


def latest(run_dir: Path) -> Optional[Path]:
    found = list_checkpoints(run_dir / "checkpoints")
    return found[-1] if found else None
