"""Where the run's actors live: Ray processes (the default), or this one process
(``runtime.mode: serial``), for stepping through an env, a loss or a flow with a debugger.

The runtime talks to its actors through this module only (``actor``, ``get``, ``wait``,
``put``, ``kill``, ``node_id``); with Ray they are Ray's own calls. In serial mode an actor is
a plain instance of its class, and a call runs at once, in the caller, when it is made: the
driver's requests run in the order it makes them, so a flow that asks for the next fragments
before it hands the last ones to the learner (PPO's ``async_sampling``) still samples them
with the weights of before the update, as with Ray. What Ray's processes give for free is kept:

- each actor has its own random generators (torch's, numpy's and Python's global ones),
  swapped in around each of its calls, so that its draws do not depend on what the other
  actors of the process drew in between: a seeded serial run repeats the Ray run's;
- a call's result is a copy, as Ray's serialization makes one, so that a fragment a worker
  hands over is not changed by its next rollout;
- an exception in a call comes back from ``get`` as Ray's ``RayTaskError`` (an instance of
  the original exception's class too), so the runtime's handling of a failed env or
  learner is the same; its traceback is the original one.

Ray is still imported (its exception classes, the actors' decorators) but never started.
"""

from __future__ import annotations

import copy
import random
import traceback
from typing import Any, Optional, Sequence

import numpy as np
import ray
import torch
from ray.exceptions import RayTaskError

LOCAL_NODE = "serial"  # the one node of a serial run

_serial = False


def use_serial(serial: bool) -> None:
    """Make the next actors plain instances in this process (True), or Ray actors (False)."""
    global _serial
    _serial = serial


def serial() -> bool:
    return _serial


class LocalRef:
    """A finished call's result, or its exception, held in this process."""

    __slots__ = ("value", "error")

    def __init__(self, value: Any = None, error: Optional[BaseException] = None):
        self.value, self.error = value, error

    def __deepcopy__(self, memo: dict) -> "LocalRef":
        return self  # a reference, as a Ray ObjectRef inside a result stays one

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _resolve(value: Any) -> Any:
    """Ray hands a task the values of the refs among its arguments (top level only)."""
    return value.result() if isinstance(value, LocalRef) else value


class _RandomState:
    """The global generators of one actor, as they would be in its own process."""

    def __init__(self) -> None:
        self.saved: Optional[tuple[Any, Any, Any]] = None

    def enter(self) -> tuple[Any, Any, Any]:
        outside = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        if self.saved is not None:
            torch.set_rng_state(self.saved[0])
            np.random.set_state(self.saved[1])
            random.setstate(self.saved[2])
        return outside

    def leave(self, outside: tuple[Any, Any, Any]) -> None:
        self.saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.set_rng_state(outside[0])
        np.random.set_state(outside[1])
        random.setstate(outside[2])


class LocalMethod:
    def __init__(self, handle: "LocalActor", name: str):
        self.handle, self.name = handle, name

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.handle._call(self.name, args, kwargs)


class LocalActor:
    """An actor handle whose calls run at once, in this process."""

    def __init__(self, cls: type, args: tuple, kwargs: dict):
        self._random = _RandomState()
        self._class, self._name = cls, cls.__name__
        self._instance: Any = None
        # Why calls fail: a failed constructor, or ``kill``; as with Ray, each call says so.
        self._dead: Optional[str] = None
        # The constructor draws from the driver's generators as they are (an actor that draws
        # seeds its own, as every distrl actor does, since a new process's are unseeded).
        outside = self._random.enter()
        try:
            self._instance = cls(*[_resolve(a) for a in args], **{k: _resolve(v) for k, v in kwargs.items()})
        except Exception as error:
            self._dead = f"{self._name}.__init__ failed: {type(error).__name__}: {error}"
        finally:
            self._random.leave(outside)

    def __deepcopy__(self, memo: dict) -> "LocalActor":
        return self  # a handle, not the actor

    def __getattr__(self, name: str) -> LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return LocalMethod(self, name)

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        method = getattr(self._instance if self._dead is None else self._class, name)
        returns = getattr(method, "__ray_num_returns__", None) or 1
        outside = self._random.enter()
        try:
            if self._dead is not None:
                raise ray.exceptions.RayActorError(error_msg=self._dead)
            value = method(*[_resolve(a) for a in args], **{k: _resolve(v) for k, v in kwargs.items()})
            value = copy.deepcopy(value)
        except ray.exceptions.RayActorError as error:
            refs = [LocalRef(error=error) for _ in range(returns)]
        except Exception as error:
            wrapped = RayTaskError(f"{self._name}.{name}", traceback.format_exc(), error).as_instanceof_cause()
            wrapped.__cause__ = error
            refs = [LocalRef(error=wrapped) for _ in range(returns)]
        else:
            refs = [LocalRef(value)] if returns == 1 else [LocalRef(part) for part in value]
        finally:
            self._random.leave(outside)
        return refs[0] if returns == 1 else refs


class _LocalClass:
    def __init__(self, cls: type):
        self.cls = cls

    def options(self, **_: Any) -> "_LocalClass":
        return self  # CPUs, restarts and placement mean nothing in one process

    def remote(self, *args: Any, **kwargs: Any) -> LocalActor:
        return LocalActor(self.cls, args, kwargs)


def actor(cls: Any) -> Any:
    """The class to create an actor from (``.options(...).remote(...)``): the Ray actor
    class itself, or in serial mode one that makes a ``LocalActor`` of the plain class."""
    if not _serial:
        return cls
    return _LocalClass(cls.__ray_metadata__.modified_class)


def get(refs: Any, timeout: Optional[float] = None) -> Any:
    if not _serial:
        return ray.get(refs, timeout=timeout)
    if isinstance(refs, list):
        return [ref.result() for ref in refs]
    return refs.result()


def wait(refs: Sequence[Any], num_returns: int = 1, timeout: Optional[float] = None) -> tuple[list, list]:
    """Every local call has finished: the first ``num_returns`` are ready, in order."""
    if not _serial:
        return ray.wait(list(refs), num_returns=num_returns, timeout=timeout)
    return list(refs[:num_returns]), list(refs[num_returns:])


def put(value: Any) -> Any:
    return ray.put(value) if not _serial else LocalRef(copy.deepcopy(value))


def kill(handle: Any, no_restart: bool = True) -> None:
    if not _serial:
        ray.kill(handle, no_restart=no_restart)
    else:
        handle._dead = f"{handle._name} was killed"


def node_id() -> str:
    """The node this code runs on (Ray's hex id; ``LOCAL_NODE`` in serial mode)."""
    return ray.get_runtime_context().get_node_id() if not _serial else LOCAL_NODE
