"""Sending `distrl train` runs to a Ray cluster as Ray Jobs, and following them.

The job's driver runs on the head node, in a copy of the working directory (the project,
uploaded by Ray), and joins the cluster through the RAY_ADDRESS that Ray sets for it.
Plain ``ray job submit -- distrl train ...`` works the same way.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from distrl.errors import DistrlError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Never uploaded with the working directory: environments, run outputs, caches.
EXCLUDES = [".git", ".venv", "venv", "runs", "__pycache__", "*.egg-info", ".pytest_cache", ".whl", ".gl"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def dashboard_address(address: Optional[str]) -> str:
    """The Jobs API address: ``--address``, RAY_API_SERVER_ADDRESS, an http RAY_ADDRESS, or
    the local default. Dashboards listen on localhost; reach a remote one through an SSH
    tunnel (``ray dashboard cluster.yaml``)."""
    if address:  # what the user typed wins over the environment
        return address if address.startswith(("http://", "https://")) else f"http://{address}"
    for candidate in (os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS")):
        if candidate and candidate.startswith(("http://", "https://")):
            return candidate
    return DEFAULT_ADDRESS


def token_message(where: str) -> str:
    return (
        f"The Ray cluster at {where} refused this machine's authentication token, or found none. "
        f"Export RAY_AUTH_MODE=token and put the cluster's token (from `ray get-auth-token` on the "
        f"head node) in ~/.ray/auth_token, or point RAY_AUTH_TOKEN_PATH at it; docs/clusters.md, "
        f"'Token authentication', says how."
    )


def client(address: Optional[str]):
    import logging

    from ray.job_submission import JobSubmissionClient

    # The SDK narrates every file it packages and every socket it closes; its modules set
    # their own loggers to INFO, so quieting Ray's root logger alone does not reach them.
    for name in ("ray", "ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from ray.exceptions import AuthenticationError

    url = dashboard_address(address)
    try:
        return JobSubmissionClient(url)
    except AuthenticationError:
        raise DistrlError(token_message(url)) from None
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise DistrlError(
            f"Could not reach the Ray Jobs API at {url} ({str(error).splitlines()[0]}). Check that the "
            f"cluster's head node runs the dashboard (ray[default]) and that the address is its "
            f"dashboard port (8265 by default); for a cloud cluster open a tunnel with "
            f"`ray dashboard clusters/aws.yaml` first. With token authentication, export "
            f"RAY_AUTH_MODE=token here too."
        ) from None


def project_root() -> Optional[Path]:
    """The source checkout distrl runs from, if it runs from one."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "distrl").is_dir() else None


def submit(
    address: Optional[str],
    train_args: list[str],
    working_dir: Optional[str],
    wait: bool,
    py_modules: Sequence[str] = (),
) -> int:
    """Send ``distrl train ...`` as a Ray Job. The working directory and each ``py_modules``
    folder are uploaded and importable in every process of the job, on every node: that is how
    the user's own env package reaches the rollout workers (``env.imports`` and friends)."""
    if not train_args or train_args[0] != "train":
        raise DistrlError(
            "distrl submit sends a training run: put the train command after `--`, for example "
            "`distrl submit --address http://127.0.0.1:8265 -- train --env CartPole-v1 --num-workers 4`."
        )
    root = project_root()
    directory = working_dir or (str(root) if root else os.getcwd())
    if not Path(directory).is_dir():
        raise DistrlError(f"--working-dir {directory!r} is not a folder.")
    runtime_env: dict[str, Any] = {"working_dir": directory, "excludes": EXCLUDES}
    for module in py_modules:
        if not (Path(module) / "__init__.py").is_file():
            raise DistrlError(
                f"--py-module {module!r} is not a package folder (a folder with an __init__.py): Ray uploads "
                f"it and puts it on every node's import path."
            )
    if py_modules:
        runtime_env["py_modules"] = [str(Path(module).resolve()) for module in py_modules]
    entrypoint = shlex.join(["python", "-m", "distrl", *train_args])
    url = dashboard_address(address)
    jobs = client(address)
    try:
        job_id = jobs.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    except Exception as error:  # the SDK raises RuntimeError, ValueError, HTTP errors
        raise DistrlError(f"The cluster refused the job: {str(error).splitlines()[0]}") from None
    print(job_id, flush=True)
    if not wait:
        print(
            f"submitted `{entrypoint}` from {directory}\n"
            f"follow it with: distrl jobs logs {job_id} --follow --address {url}\n"
            f"           or: distrl jobs status {job_id} --address {url}",
            file=sys.stderr,
        )
        return 0
    print(
        f"submitted `{entrypoint}` from {directory}; its logs follow until it ends (--no-wait returns at once)",
        file=sys.stderr,
    )
    try:
        with jobs_api_errors(job_id):
            follow_logs(jobs, job_id)
            info = jobs.get_job_info(job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following job {job_id}; it runs on. `distrl jobs stop {job_id} --address {url}` stops it.",
            file=sys.stderr,
        )
        return 130
    return report_outcome(job_id, info)


def report_outcome(job_id: str, info: Any) -> int:
    """The job's outcome as this command's exit status, so scripts and CI can chain on it: 0
    for SUCCEEDED; for FAILED the driver's own exit code where Ray recorded one (distrl train
    exits 2 for bad input), else 1. ``ray job submit`` exits 0 for a stopped job; here it is 1,
    since the run did not reach its stop rule."""
    status = str(info.status)
    print(f"job {job_id}: {status}", file=sys.stderr)
    if status == "SUCCEEDED":
        return 0
    if info.message:
        print(info.message, file=sys.stderr)
    code = getattr(info, "driver_exit_code", None)
    return code if status == "FAILED" and isinstance(code, int) and 0 < code < 256 else 1


@contextlib.contextmanager
def jobs_api_errors(job_id: Optional[str]) -> Iterator[None]:
    """The Jobs SDK raises RuntimeError, HTTP and websocket errors of several libraries; each
    becomes one line naming the job (a tunnel that closed, an unknown id, a lost token)."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        raise DistrlError(token_message("this address")) from None
    except (KeyboardInterrupt, DistrlError):
        raise
    except Exception as error:
        what = f"Job {job_id!r}" if job_id else "The Jobs API"
        detail = (str(error).splitlines()[0] if str(error) else type(error).__name__).rstrip(".")
        raise DistrlError(
            f"{what}: {detail}. `distrl jobs list` shows the jobs this cluster knows. If the "
            f"connection dropped, check the dashboard tunnel and try again: a job runs on whether "
            f"or not anyone follows it."
        ) from None


def follow_logs(jobs, job_id: str) -> None:
    import asyncio

    async def tail() -> None:
        async for lines in jobs.tail_job_logs(job_id):
            print(lines, end="", flush=True)

    asyncio.run(tail())


def command(action: str, job_id: Optional[str], address: Optional[str], follow: bool) -> int:
    if action != "list" and not job_id:
        raise DistrlError(f"distrl jobs {action} needs a job id (`distrl jobs list` shows them).")
    jobs = client(address)
    with jobs_api_errors(None if action == "list" else job_id):
        if action == "list":
            for job in jobs.list_jobs():
                print(f"{job.submission_id or job.job_id}  {job.status}  {job.entrypoint}")
            return 0
        if action == "status":
            info = jobs.get_job_info(job_id)
            print(info.status)
            if info.message:
                print(info.message, file=sys.stderr)
            return 0
        if action == "logs":
            if follow:
                assert job_id is not None  # checked above: every action but list needs one
                follow_logs(jobs, job_id)
            else:
                print(jobs.get_job_logs(job_id), end="")
            return 0
        if action == "stop":
            jobs.stop_job(job_id)
            for _ in range(60):
                status = str(jobs.get_job_status(job_id))
                if status in TERMINAL:
                    break
                time.sleep(1)
            print(status)
            return 0
    raise DistrlError(f"Unknown jobs action {action!r}; use status, logs, stop or list.")  # argparse prevents it
