"""The user's own environments, in the three forms gymnasium users already know.

- ``my_package.module:MyEnv-v0``: gymnasium's own form; the module registers ``MyEnv-v0``
  when imported (``gymnasium.make`` understands this form).
- ``env.imports: [my_package, ...]``: modules that register envs on import, for ids without
  a module part.
- ``env.entry_point: my_package.module:make_fn``: a function or class that builds the env;
  it is registered with gymnasium under ``env.id`` and ``env.options`` are its keyword
  arguments.

Every process that builds an env must import the user's code first: the driver, each
rollout worker and the evaluator are separate processes, on other nodes in a cluster. So
:func:`prepare` runs in each of them, from the run's config, before any env is made; a
module that will not import names itself and the process that tried (the message reaches
the driver from a worker on another node, whose PYTHONPATH may differ).
"""

from __future__ import annotations

import importlib
import socket
from typing import Any, Iterable, Optional

import gymnasium as gym

from distrl.errors import ConfigError, EnvironmentNotAvailable

FORMS = (
    "gymnasium's 'my_package.module:MyEnv-v0' form, env.imports: [my_package] for a package that registers its "
    "ids on import, or env.entry_point: 'my_package.module:make_env' with env.id naming it (docs/environments.md, "
    '"Your own environment")'
)


def split_module(env_id: str) -> tuple[Optional[str], str]:
    """``"pkg.mod:MyEnv-v0"`` -> ``("pkg.mod", "MyEnv-v0")``; ids without a module part -> ``(None, id)``."""
    module, colon, name = env_id.rpartition(":")
    return (module, name) if colon else (None, env_id)


def import_modules(modules: Iterable[str], where: str) -> None:
    """Import each module, or say which one failed, why, and in which process."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise EnvironmentNotAvailable(
                f"Could not import {module!r} in {where}: {error}. The module that defines your environment must "
                f"be importable in every process that builds it: install its package on every node, or put its "
                f"folder on PYTHONPATH (with `distrl submit`, keep it inside the submitted working directory)."
            ) from None
        except Exception as error:  # the user's module raised while importing
            raise EnvironmentNotAvailable(
                f"Importing {module!r} in {where} raised {type(error).__name__}: {error}"
            ) from None


def _register_entry_point(env_id: str, entry_point: str) -> None:
    module, colon, attribute = entry_point.partition(":")
    if not colon or not module or not attribute:
        raise ConfigError(
            f"env.entry_point must be 'package.module:function' (a function or class that returns a gymnasium "
            f"env); got {entry_point!r}."
        )
    if split_module(env_id)[0] is not None:
        raise ConfigError(
            f"With env.entry_point, env.id is the name the env is registered under and has no module part; "
            f"got {env_id!r}. Use for example env.id: MyEnv-v0."
        )
    known = gym.registry.get(env_id)
    if known is not None and known.entry_point != entry_point:
        raise ConfigError(
            f"env.entry_point {entry_point!r} would replace {env_id!r}, which is already registered "
            f"(to {known.entry_point!r}). Give your env its own name with env.id, for example MyEnv-v0."
        )
    if known is None:
        try:
            gym.register(id=env_id, entry_point=entry_point)
        except gym.error.Error as error:
            raise ConfigError(f"env.id {env_id!r} cannot name an environment: {error}") from None


def prepare(env_config: Any, where: str = "the driver") -> None:
    """Import what the config's env needs and register its entry point, in this process.

    Cheap when there is nothing to do; safe to call again (imports are cached, a registered
    entry point is kept)."""
    modules = list(getattr(env_config, "imports", None) or [])
    module, _ = split_module(env_config.id)
    if module is not None:
        modules.append(module)
    entry_point = getattr(env_config, "entry_point", None)
    if entry_point:
        modules.append(entry_point.partition(":")[0])
    import_modules(modules, where)
    if entry_point:
        _register_entry_point(env_config.id, entry_point)


def worker_process(worker_id: int) -> str:
    """How a message names a rollout worker's process: its number and its node's address."""
    try:
        import ray

        address = ray.util.get_node_ip_address()
    except Exception:
        address = socket.gethostname()
    return f"rollout worker {worker_id} on node {address}"


__all__ = ["FORMS", "import_modules", "prepare", "split_module", "worker_process"]
