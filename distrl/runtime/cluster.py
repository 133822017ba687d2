"""Starting an embedded local Ray, or joining a running cluster."""

from __future__ import annotations

import os
import sys
from typing import Optional

from distrl.errors import DistrlError

# Ray reads this when it is imported. "0" makes a single-machine Ray advertise 127.0.0.1
# instead of the machine's network address, so an embedded Ray is reachable from this
# machine only. It is never set when joining a cluster, whose nodes must reach each other.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def prefer_loopback() -> None:
    """Call before ``import ray`` when the run will start its own embedded Ray."""
    os.environ.setdefault(_LOOPBACK_ENV, "0")
    if "ray" in sys.modules:  # already imported: Ray reads the constant at call time
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = os.environ[_LOOPBACK_ENV] not in ("0", "false", "False")


def connect(address: Optional[str], num_cpus: float) -> bool:
    """Join the cluster at ``address``, or start an embedded Ray declaring at least
    ``num_cpus`` CPUs. Returns True when this process started Ray (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    common = dict(logging_level="WARNING", log_to_driver=True, configure_logging=True)
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise DistrlError(
                f"Could not join the Ray cluster at {address!r}: {str(error).splitlines()[0]}. "
                f"Check that the head node is up (`ray status`), that the address is the GCS "
                f"address HOST:6379 (or `auto` on a cluster node), and that RAY_AUTH_MODE=token is "
                f"exported here like on the nodes. Leave out --address to train on an embedded local Ray."
            ) from None
        return False
    prefer_loopback()
    machine_cpus = os.cpu_count() or 1
    ray.init(num_cpus=max(machine_cpus, int(num_cpus + 0.999)), include_dashboard=False, **common)
    return True


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
