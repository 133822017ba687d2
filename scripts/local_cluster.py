#!/usr/bin/env python
"""A multi-node Ray cluster on this machine, every node on 127.0.0.1: for trying
distrl's cluster features (several nodes, job submission, nodes joining and leaving) on a
laptop, and for the tests. Real clusters need none of this: there, `ray start` on each
machine with its own address is enough (docs/clusters.md).

    python scripts/local_cluster.py start --port 6390 --dashboard-port 8265 --cpus 2
    python scripts/local_cluster.py add --address 127.0.0.1:6390 --cpus 2     # prints the node's pid
    python scripts/local_cluster.py remove --pid PID                         # that node leaves
    python scripts/local_cluster.py stop                                     # every node

Why a script: on Linux, Ray replaces a loopback node address with the machine's network
address, so a "local" cluster would talk over the network interface. With
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 every Ray process keeps 127.0.0.1, but `ray start`
then refuses to add worker nodes; for worker nodes this script runs `ray start` with that
check lifted and the loopback address kept. Token authentication stays on
(RAY_AUTH_MODE=token). Drivers joining such a cluster need the same environment variable;
`distrl train --address 127.0.0.1:PORT` sets it itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}

# Run inside the worker node's `ray start` process only: let it join, keep 127.0.0.1.
_WORKER_NODE_START = """
import sys
from ray._private import ray_constants, services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray"] + sys.argv[1:]
main()
"""


def environment() -> dict[str, str]:
    # The nodes run this Python environment, as a real cluster's nodes run theirs: jobs
    # that call `python` get this interpreter.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, **LOOPBACK_ENV, "PATH": path}


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it), so clusters started side by side or
    after one that was killed do not collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_command() -> list[str]:
    return [sys.executable, "-m", "ray.scripts.scripts"]


def start_head(port: int, dashboard_port: int, cpus: int, temp_dir: str | None = None) -> None:
    command = [
        *ray_command(),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={cpus}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--disable-usage-stats",
    ]
    if temp_dir:
        command.append(f"--temp-dir={temp_dir}")
    subprocess.run(command, env=environment(), check=True, stdout=subprocess.DEVNULL)


def add_node(address: str, cpus: int) -> int:
    """Start a worker node and return the pid of its raylet (the node lives while it does)."""
    before = set(raylet_pids())
    command = [
        sys.executable,
        "-c",
        _WORKER_NODE_START,
        "start",
        f"--address={address}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--disable-usage-stats",
    ]
    subprocess.run(command, env=environment(), check=True, stdout=subprocess.DEVNULL)
    for _ in range(50):
        new = set(raylet_pids()) - before
        if new:
            return new.pop()
        time.sleep(0.1)
    raise RuntimeError("the new node's raylet did not appear")


def raylet_pids() -> list[int]:
    result = subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True, text=True)
    return [int(pid) for pid in result.stdout.split()]


def remove_node(pid: int) -> None:
    """The node leaves as a machine does that is switched off: its raylet and everything it
    started are killed."""
    result = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    children = [int(child) for child in result.stdout.split()]
    for target in [pid, *children]:
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop() -> None:
    subprocess.run([*ray_command(), "stop", "--force"], env=environment(), stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the head node")
    start.add_argument("--port", type=int, default=6379)
    start.add_argument("--dashboard-port", type=int, default=8265)
    start.add_argument("--cpus", type=int, default=os.cpu_count())
    add = sub.add_parser("add", help="add a worker node")
    add.add_argument("--address", default="127.0.0.1:6379")
    add.add_argument("--cpus", type=int, default=2)
    remove = sub.add_parser("remove", help="take a worker node away")
    remove.add_argument("--pid", type=int, required=True, help="the raylet pid that `add` printed")
    sub.add_parser("stop", help="stop every Ray node on this machine")
    args = parser.parse_args()
    if args.command == "start":
        start_head(args.port, args.dashboard_port, args.cpus)
        print(f"head node up: address 127.0.0.1:{args.port}, dashboard http://127.0.0.1:{args.dashboard_port}")
    elif args.command == "add":
        print(add_node(args.address, args.cpus))
    elif args.command == "remove":
        remove_node(args.pid)
    else:
        stop()


if __name__ == "__main__":
    main()
