"""Config fields that carry their own help text.

Every config key is declared with :func:`option`, so that ``distrl train --help``,
``--print-config`` and the docs can show what a key does from one place: the field itself.
This module imports nothing of distrl, so algorithm files (which must not import the
runtime or the config tree) can use it too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: Optional[Sequence[str]] = None,
    factory: Optional[Callable[[], Any]] = None,
) -> Any:
    """A dataclass field with ``help`` (and, for strings, the allowed ``choices``) in its
    metadata; ``factory`` for mutable defaults (lists, dicts)."""
    if not help:
        raise ValueError("every config option needs a help text")
    metadata: dict[str, Any] = {"help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_of(field: dataclasses.Field) -> str:
    return str(field.metadata.get("help", ""))


def choices_of(field: dataclasses.Field) -> Optional[tuple[str, ...]]:
    return field.metadata.get("choices")
