"""scripts/ray_up_check.py brings clusters/local.yaml up for real: `ray up` over SSH to
127.0.0.1, a run sent with `distrl submit`, and `ray down`. It needs root, an sshd and rsync,
so CI runs it as its own step (.ci/run), beside the README's test command. Here: the
one-machine variant it derives changes only what a loopback machine needs, so the check
exercises the file users copy."""

import copy
import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ray_up_check.py"

spec = importlib.util.spec_from_file_location("ray_up_check", SCRIPT)
ray_up_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ray_up_check)


def test_the_one_machine_variant_changes_only_what_a_loopback_machine_needs():
    from ray.autoscaler._private.util import prepare_config, validate_config

    template = yaml.safe_load((ROOT / "clusters" / "local.yaml").read_text())
    home = Path("/tmp/rayup-home")
    derived = ray_up_check.derive(
        template,
        project=ROOT,
        home=home,
        key=Path("/tmp/key"),
        token=Path("/tmp/token"),
        port=6400,
        dashboard_port=8300,
    )
    validate_config(prepare_config(copy.deepcopy(derived)))
    assert derived["provider"] == {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    assert derived["auth"]["ssh_user"] == ray_up_check.USER and derived["min_workers"] == derived["max_workers"] == 0
    old_home = f"/home/{template['auth']['ssh_user']}"
    # The template's setup commands, word for word but for the home folder: distrl is
    # installed the way users install it.
    assert derived["setup_commands"] == [c.replace(old_home, str(home)) for c in template["setup_commands"]]
    assert derived["file_mounts"] == {
        f"{home}/distrl": str(ROOT),
        f"{home}/.ray/auth_token": "/tmp/token",
    }
    assert [p.replace(old_home, "~") for p in template["file_mounts"]] == ["~/distrl", "~/.ray/auth_token"]
    for key in ("rsync_exclude", "rsync_filter", "worker_start_ray_commands"):
        assert derived[key] == template[key]
    # Start commands: the template's plus the loopback address and free ports, nothing else.
    added = (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ",
        " --node-ip-address=127.0.0.1 --dashboard-port=8300 --disable-usage-stats",
    )
    undone = [c.replace("--port=6400", "--port=6379") for c in derived["head_start_ray_commands"]]
    for part in added:
        undone = [c.replace(part, "") for c in undone]
    assert undone == template["head_start_ray_commands"]
    started = [c for c in derived["head_start_ray_commands"] if "ray start" in c]
    assert started and all("--dashboard-host=127.0.0.1" in c and "RAY_AUTH_MODE=token" in c for c in started)
