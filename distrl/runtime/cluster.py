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


def starts_embedded(address: Optional[str]) -> bool:
    """No address and no RAY_ADDRESS (which Ray Jobs set for their driver): an embedded Ray."""
    return not (address or os.environ.get("RAY_ADDRESS"))


def is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def resolve_address(address: Optional[str]) -> Optional[str]:
    """The cluster to join: ``address``, else RAY_ADDRESS (set for Ray Jobs and by users);
    "auto" means the cluster started on this machine with ``ray start``."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            address = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise DistrlError(
                "--address auto found no Ray cluster started on this machine. Start one with "
                "`ray start --head` (see docs/clusters.md), give its address as HOST:PORT, or leave "
                "out --address to train on an embedded local Ray."
            ) from None
    return address


def connect(address: Optional[str], num_cpus: float) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS), or start an embedded Ray declaring
    at least ``num_cpus`` CPUs. Returns True when this process started Ray (and must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    common = dict(logging_level="WARNING", log_to_driver=True, configure_logging=True)
    address = resolve_address(address)
    if address:
        if is_loopback(address):
            prefer_loopback()  # a cluster on this machine: keep talking over 127.0.0.1
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
    # "local": a new embedded instance, even when a `ray start` cluster runs on this machine.
    ray.init(address="local", num_cpus=max(machine_cpus, int(num_cpus + 0.999)), include_dashboard=False, **common)
    return True


def alive_nodes() -> dict[str, float]:
    """``{node_id: CPUs}`` of the nodes alive now."""
    import ray

    return {node["NodeID"]: float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes() if node["Alive"]}


def on_head_node() -> dict:
    """Actor options that place it on the head node when it fits there: the learner, the
    parameter server and the replay shards hold the run's state, and the head is the one
    node that stays while worker nodes come and go. Soft: elsewhere if the head is full."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    for node in ray.nodes():
        if node["Alive"] and "node:__internal_head__" in node["Resources"]:
            return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)}
    return {}


def request_cpus(bundles: list[dict[str, float]]) -> None:
    """Ask the autoscaler for these resource bundles (a cluster launched from a YAML then
    adds nodes up to its max_workers). On a cluster without an autoscaler it does nothing."""
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles)


def cluster_cpus() -> float:
    import ray

    return float(ray.cluster_resources().get("CPU", 0.0))


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))
