"""An environment that lives in a child process.

stable-retro allows one emulator per process, so a rollout worker that steps K retro games
runs each in its own child process; this proxy looks like any other ``gymnasium.Env``.
The child builds the whole preprocessed env, so only the small 84x84 frames cross the pipe
(and the full screen, when ``render()`` is asked for one to record).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from typing import Any, Callable, Optional

import gymnasium as gym

from distrl.errors import DistrlError


def _serve(connection, make: Callable[[], gym.Env]) -> None:
    """The child's loop: build the env, then answer (command, payload) messages."""
    try:
        env = make()
        connection.send(("ok", (env.observation_space, env.action_space, env.spec, env.metadata, env.render_mode)))
    except BaseException as error:  # report any failure to build, then stop
        connection.send(("error", _portable(error)))
        connection.close()
        return
    try:
        while True:
            command, payload = connection.recv()
            if command == "step":
                result: Any = env.step(payload)
            elif command == "reset":
                result = env.reset(**payload)
            elif command == "render":
                result = env.render()
            elif command == "close":
                env.close()
                connection.send(("ok", None))
                return
            else:
                raise ValueError(f"unknown command {command!r}")
            connection.send(("ok", result))
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException as error:
        connection.send(("error", _portable(error)))
    finally:
        connection.close()


def _portable(error: BaseException) -> BaseException:
    """The exception itself when it pickles (a DistrlError with its message), else a
    RuntimeError carrying the child's traceback."""
    if isinstance(error, DistrlError):
        return error
    return RuntimeError(
        f"{type(error).__name__}: {error}\n--- in the environment's process ---\n{traceback.format_exc()}"
    )


class SubprocessEnv(gym.Env):
    """Runs ``make()`` in a child process (spawned, so it starts clean inside a Ray worker)
    and forwards ``reset``/``step``/``render``/``close`` to it."""

    def __init__(self, make: Callable[[], gym.Env], name: str = "environment"):
        self._name = name
        context = mp.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, make), daemon=True)
        self._process.start()
        child.close()
        self.observation_space, self.action_space, self.spec, self.metadata, self.render_mode = self._receive()
        self._closed = False

    def _receive(self) -> Any:
        try:
            status, payload = self._connection.recv()
        except (EOFError, ConnectionResetError):
            raise RuntimeError(
                f"The process running {self._name} exited unexpectedly (exit code {self._process.exitcode})."
            ) from None
        if status == "error":
            raise payload
        return payload

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)  # the proxy's own generator, as gymnasium expects
        self._connection.send(("reset", {"seed": seed, "options": options}))
        return self._receive()

    def step(self, action):
        self._connection.send(("step", action))
        return self._receive()

    def render(self):
        self._connection.send(("render", None))
        return self._receive()

    def close(self):
        if getattr(self, "_closed", True):
            return
        self._closed = True
        try:
            self._connection.send(("close", None))
            if self._connection.poll(5):  # a stuck child gets 5 s, then it is killed
                self._receive()
        except Exception:
            pass  # closing: whatever the child says now does not matter
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
        self._connection.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
