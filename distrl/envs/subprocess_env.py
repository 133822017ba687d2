"""An environment that lives in a child process.

stable-retro allows one emulator per process, so a rollout worker that steps K retro games
runs each in its own child process; this proxy looks like any other ``gymnasium.Env``.
The child builds the whole preprocessed env, so only the small 84x84 frames cross the pipe
(and the full screen, when ``render()`` is asked for one to record).

The child is a fresh ``python -c`` that imports distrl and nothing of the caller's: not
multiprocessing's ``spawn``, which re-runs the caller's ``__main__`` in the child, so a user's
script without an ``if __name__ == "__main__":`` guard would start its own training again in
every emulator process, and a script read from stdin or a notebook would fail to start one.
The two ends talk over a socket pair with multiprocessing's ``Connection`` (pickled
messages); the child inherits the parent's ``sys.path`` and exits when the parent's end
closes (at its next message: a child stuck inside ``env.step`` is killed by ``close``).
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import traceback
from multiprocessing.connection import Connection
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
    except (EOFError, KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        return  # the parent closed its end or died: nobody is left to serve
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


def _child_main(fd: int) -> None:
    """Entry point of the child process: ``fd`` is its end of the socket pair."""
    connection = Connection(fd)
    make = pickle.loads(connection.recv_bytes())
    _serve(connection, make)


class SubprocessEnv(gym.Env):
    """Runs ``make()`` in a child process (see the module's docstring) and forwards
    ``reset``/``step``/``render``/``close`` to it. ``make`` must pickle by reference: a
    module-level function, or a ``functools.partial`` of one."""

    def __init__(self, make: Callable[[], gym.Env], name: str = "environment"):
        self._name = name
        self._closed = True
        ours, theirs = socket.socketpair()
        start = f"from distrl.envs.subprocess_env import _child_main; _child_main({theirs.fileno()})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", start],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)},
        )
        theirs.close()
        self._connection = Connection(ours.detach())
        try:
            self._connection.send_bytes(pickle.dumps(make))
            self.observation_space, self.action_space, self.spec, self.metadata, self.render_mode = self._receive()
        except BaseException:
            self._end_child()
            raise
        self._closed = False

    def _end_child(self) -> None:
        self._connection.close()  # the child sees the end of its input and exits
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def _receive(self) -> Any:
        try:
            status, payload = self._connection.recv()
        except (EOFError, ConnectionResetError):
            try:
                code = self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            raise RuntimeError(
                f"The process running {self._name} exited unexpectedly (exit code {code}; its own messages are "
                f"above in this process's output)."
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
        self._end_child()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
