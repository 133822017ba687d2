#!/usr/bin/env python
"""`ray up` of clusters/local.yaml for real, on this one machine, over SSH to 127.0.0.1.

    python scripts/ray_up_check.py [--keep]     # as root; under a minute; prints each step and its time

The launcher path of the template is what a user runs against their own machines: SSH in,
rsync the project and the token (file_mounts), install distrl with the template's own setup
command, start Ray with its head start commands, then `distrl submit` a run and `ray down`.
This script derives a one-machine variant of the template (`derive`: head 127.0.0.1, no
worker machines, a login user and SSH key made for the check, this checkout as the mounted
project) and runs all of that, then checks the run's progress.jsonl and that no process of
the cluster, and no file of its user outside the check's work folder, is left.

What it needs, and why:
- root: it creates the login user `distrl-rayup` (the "remote" account, with its own home,
  shell profile and Ray temp folder) and starts an sshd on 127.0.0.1:22 (Ray's launcher has
  no SSH port option) unless one already listens there;
- Debian's openssh-server and rsync (`apt-get install openssh-server rsync`);
- this Python environment with distrl's dependencies, and the machine's own Python of the
  same version: the user's environment is a fresh venv of that Python, which sees the
  dependencies through a path file, as downloading torch and Ray again would take minutes;
  distrl itself is installed into it by the template's setup command.
Nothing leaves the machine: every connection goes to 127.0.0.1. Exit status 0 when every
check holds, 1 when one fails, 77 when a prerequisite is missing (the message says which).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "clusters" / "local.yaml"
USER = "distrl-rayup"
SKIPPED = 77  # the exit status automake and friends use for "not run here"
SSHD = "/usr/sbin/sshd"

sys.path.insert(0, str(ROOT / "scripts"))
import local_cluster  # noqa: E402  (a sibling script, not a package)


def missing_prerequisite() -> Optional[str]:
    """Why the check cannot run here, or None."""
    if os.geteuid() != 0:
        return "the ray up check needs root: it creates a login user for the cluster's SSH and an sshd on 127.0.0.1:22"
    absent = [tool for tool in ("ssh", "ssh-keygen", "rsync", "useradd", "userdel") if shutil.which(tool) is None]
    if not Path(SSHD).is_file():
        absent.append("sshd")
    if absent:
        return (
            f"the ray up check needs {', '.join(absent)} (Debian's openssh-server, rsync and passwd packages have them)"
        )
    if system_python() is None:
        return (
            f"the ray up check needs a system python{sys.version_info.major}.{sys.version_info.minor} in "
            f"/usr/bin or /usr/local/bin (the Python of this environment's version, which the check's user "
            f"can run)"
        )
    return None


def system_python() -> Optional[str]:
    """The interpreter of the user's environment: the machine's own Python of this one's
    version (so this environment's packages load in it). This one may live where other
    users cannot go (a pyenv build under /root, for one)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in ("/usr/bin", "/usr/local/bin"):
        candidate = Path(folder) / version
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def derive(
    template: dict[str, Any],
    *,
    project: Path,
    home: Path,
    key: Path,
    token: Path,
    port: int,
    dashboard_port: int,
) -> dict[str, Any]:
    """The one-machine variant of the template. Setup commands are the template's, with the
    remote home folder moved; start commands are the template's with the loopback address
    kept and free ports. Everything else (file mounts, rsync filters, ...) is the template's."""
    config = copy.deepcopy(template)
    template_home = f"/home/{template['auth']['ssh_user']}"

    def moved(text: str) -> str:
        return text.replace(template_home, str(home))

    config["cluster_name"] = "distrl-ray-up-check"
    config["provider"] = {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    config["auth"] = {"ssh_user": USER, "ssh_private_key": str(key)}
    config["min_workers"] = config["max_workers"] = 0
    mounts = {}
    for remote, local in template["file_mounts"].items():
        if local == ".":
            local = str(project)
        elif local.endswith("auth_token"):
            local = str(token)
        mounts[moved(remote)] = local
    config["file_mounts"] = mounts
    config["setup_commands"] = [moved(command) for command in template["setup_commands"]]
    # On Linux, Ray moves a node given as 127.0.0.1 to the machine's network address; with
    # this switch off it keeps loopback (scripts/local_cluster.py says more).
    loopback = (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --node-ip-address=127.0.0.1 "
        f"--dashboard-port={dashboard_port} --disable-usage-stats"
    )
    config["head_start_ray_commands"] = [
        moved(command).replace("ray start --head", loopback).replace("--port=6379", f"--port={port}")
        for command in template["head_start_ray_commands"]
    ]
    return config


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Steps:
    """Prints each step with the seconds since the start, so a slow step shows itself."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(command, stdin=subprocess.DEVNULL, text=True, **kwargs)


def user_processes() -> list[str]:
    """The user's processes but its SSH sessions: the launcher's ssh keeps its connection
    open for 10 s after the last command (ControlPersist), and that is not the cluster."""
    found = run(["pgrep", "-a", "-u", USER], capture_output=True)
    lines = found.stdout.strip().splitlines()
    return [line for line in lines if not line.split(maxsplit=1)[-1].startswith("sshd:")]


def files_left_in_tmp(work: Path) -> list[str]:
    """What the check's user made in the machine's temp folder: the user is deleted at the
    end, so anything there would be left behind with an owner nobody has."""
    found = run(["find", tempfile.gettempdir(), "-maxdepth", "1", "-user", USER], capture_output=True)
    return [path for path in found.stdout.split() if Path(path) != work and not Path(path).is_relative_to(work)]


def make_user(work: Path, python: str) -> Path:
    """The remote account: a home under ``work``, a key it accepts, and a shell profile that
    puts its own Python environment first (where the setup command installs distrl) and gives
    its Ray a temp folder of its own (the machine's /tmp/ray belongs to other users' Ray).
    Ray's launcher runs every command through ``bash --login`` after sourcing ~/.bashrc, as
    on a real machine."""
    home = work / "home"
    if run(["id", USER], capture_output=True).returncode == 0:  # left by a check that was killed
        run(["pkill", "-KILL", "-u", USER])
        run(["userdel", USER], capture_output=True)
    run(["useradd", "--home-dir", str(home), "--create-home", "--shell", "/bin/bash", "-p", "*", USER], check=True)
    key = work / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "authorized_keys").write_text((work / "id_ed25519.pub").read_text())

    venv = home / "venv"
    run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The `ray` command of the user's environment (console scripts come with a pip install of
    # Ray, which the path file replaces).
    ray = venv / "bin" / "ray"
    ray.write_text(f"#!{venv}/bin/python\nimport sys\nfrom ray.scripts.scripts import main\nsys.exit(main())\n")
    ray.chmod(0o755)
    (home / ".bashrc").write_text(
        f"export PATH={venv}/bin:$PATH\n"
        f"export RAY_TMPDIR={work}/r\n"
        # Its other temp files too (torch makes /tmp/torchinductor_<user>): a real machine
        # keeps them, the check removes everything it made.
        f"export TMPDIR={work}/tmp\n"
        # distrl's build needs setuptools >= 77, which the outer environment has: build in
        # place rather than download it again.
        "export PIP_NO_BUILD_ISOLATION=0 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1\n"
    )
    (work / "r").mkdir()
    (work / "tmp").mkdir()
    run(["chown", "-R", f"{USER}:{USER}", str(home), str(work / "r"), str(work / "tmp")], check=True)
    return key


def start_sshd(work: Path) -> Optional[subprocess.Popen]:
    """An sshd on 127.0.0.1:22 that lets in the check's user only, with its key only; None
    when an sshd already listens there (it reads the same ~/.ssh/authorized_keys)."""
    if listening(22):
        return None
    host_key = work / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    config = work / "sshd_config"
    config.write_text(
        "ListenAddress 127.0.0.1\nPort 22\n"
        f"HostKey {host_key}\nPidFile {work}/sshd.pid\n"
        "AuthorizedKeysFile .ssh/authorized_keys\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
        f"AllowUsers {USER}\nUsePAM no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    sshd = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=open(work / "sshd.log", "w")
    )
    deadline = time.monotonic() + 20
    while not listening(22):
        if sshd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sshd did not start: {(work / 'sshd.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return sshd


def check(work: Path, steps: Steps, env_steps: int) -> list[str]:
    """Everything after the prerequisites; returns the failures (empty when all hold)."""
    failures: list[str] = []
    python = sys.executable
    key = make_user(work, system_python() or python)
    steps.say(f"user {USER}: home {work / 'home'}, key {key.name}, Python environment {work / 'home' / 'venv'}")
    sshd = start_sshd(work)
    steps.say("sshd on 127.0.0.1:22 (" + ("started for the check" if sshd else "already running") + ")")
    token = work / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port, dashboard = local_cluster.free_port(), local_cluster.free_port()
    home = work / "home"
    config = derive(
        yaml.safe_load(TEMPLATE.read_text()),
        project=ROOT,
        home=home,
        key=key,
        token=token,
        port=port,
        dashboard_port=dashboard,
    )
    cluster_file = work / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(config, sort_keys=False))
    client = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "PATH": os.path.dirname(python) + os.pathsep + os.environ.get("PATH", ""),
    }
    client.pop("RAY_ADDRESS", None)
    ray = local_cluster.ray_command()
    try:
        up = run(
            [*ray, "up", "-y", "--no-config-cache", str(cluster_file)], capture_output=True, env=client, timeout=600
        )
        (work / "ray-up.log").write_text(up.stdout + up.stderr)
        if up.returncode != 0:
            return [f"ray up exited {up.returncode}:\n{(up.stdout + up.stderr)[-4000:]}"]
        steps.say(f"ray up -y: head on 127.0.0.1, GCS port {port}, dashboard 127.0.0.1:{dashboard}")
        installed = run(
            [str(home / "venv" / "bin" / "python"), "-c", "import distrl; print(distrl.__file__)"],
            capture_output=True,
            cwd=home,  # not this checkout, whose distrl/ a `python -c` would import first
            env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
        )
        if not installed.stdout.startswith(str(home / "venv")):
            failures.append(f"the setup command did not install distrl into the user's environment: {installed}")

        out = home / "runs" / "check"
        address = f"http://127.0.0.1:{dashboard}"
        submitted = run(
            [python, "-m", "distrl", "submit", "--address", address, "--no-wait", "--", "train",
             "--config", "ppo_cartpole", "--num-workers", "1", "--stop-env-steps", str(env_steps), "--out", str(out)],
            capture_output=True,
            env=client,
            timeout=120,
        )  # fmt: skip
        job_id = submitted.stdout.strip().splitlines()[0] if submitted.stdout.strip() else ""
        if submitted.returncode != 0 or not job_id.startswith("raysubmit_"):
            failures.append(f"distrl submit failed ({submitted.returncode}): {submitted.stderr[-3000:]}")
            return failures
        steps.say(f"distrl submit --no-wait: {job_id}")
        logs = run(
            [python, "-m", "distrl", "jobs", "logs", job_id, "--follow", "--address", address],
            capture_output=True,
            env=client,
            timeout=300,
        )
        status = run(
            [python, "-m", "distrl", "jobs", "status", job_id, "--address", address],
            capture_output=True,
            env=client,
            timeout=60,
        ).stdout.strip()
        steps.say(f"distrl jobs logs --follow: the job ended {status}")
        if status != "SUCCEEDED" or "stopped: env_steps" not in logs.stdout:
            failures.append(f"the job ended {status}; its log:\n{logs.stdout[-3000:]}{logs.stderr[-1000:]}")
        progress = out / "progress.jsonl"
        records = [json.loads(line) for line in progress.read_text().splitlines()] if progress.is_file() else []
        if not records or records[-1]["env_steps"] < env_steps:
            failures.append(f"progress.jsonl in {out} does not reach {env_steps} env steps: {records[-1:]}")
        else:
            last = records[-1]
            steps.say(
                f"progress.jsonl: {len(records)} records, env_steps {last['env_steps']}, "
                f"return {last['episode_return_mean']:.1f}, {last['num_workers']} worker(s)"
            )
    finally:
        down = run([*ray, "down", "-y", str(cluster_file)], capture_output=True, env=client, timeout=300)
        (work / "ray-down.log").write_text(down.stdout + down.stderr)
        if down.returncode != 0:
            failures.append(f"ray down exited {down.returncode}:\n{(down.stdout + down.stderr)[-3000:]}")
        lingering = user_processes()
        if lingering:
            names = sorted({line.split()[1].rsplit("/", 1)[-1] for line in lingering if len(line.split()) > 1})
            steps.say(f"ray down -y returned; waiting for {len(lingering)} process(es) to end: {', '.join(names)}")
        deadline = time.monotonic() + 30
        while user_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        left = user_processes()
        if left:
            failures.append("processes left after ray down:\n" + "\n".join(left))
        else:
            steps.say("ray down -y: no process of the cluster left")
        strays = files_left_in_tmp(work)
        if strays:
            failures.append("the user's files left outside the work folder: " + ", ".join(strays))
        if sshd is not None:
            sshd.terminate()
            sshd.wait(timeout=30)
    return failures


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-steps", type=int, default=3000, help="length of the submitted run (default 3000)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, derived YAML) for a look")
    args = parser.parse_args(argv)
    reason = missing_prerequisite()
    if reason:
        print(f"ray up check skipped: {reason}.", file=sys.stderr)
        return SKIPPED
    steps = Steps()
    work = Path(tempfile.mkdtemp(prefix="distrl-rayup-"))  # short: Ray's socket paths live below it
    work.chmod(0o755)
    try:
        failures = check(work, steps, args.env_steps)
    finally:
        run(["pkill", "-KILL", "-u", USER])
        run(["userdel", USER], capture_output=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    steps.say("ray up check: " + ("FAILED" if failures else "passed") + (f" (kept {work})" if args.keep else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
