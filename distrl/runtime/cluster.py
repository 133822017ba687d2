"""Starting an embedded local Ray, or joining a running cluster."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
from typing import Any, Iterator, Optional

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


def ray_address_env() -> Optional[str]:
    """RAY_ADDRESS when it names a cluster to join (Ray Jobs set it for their driver). An
    http:// value is a dashboard, which Ray's docs suggest exporting for `ray job`
    commands; training does not join that."""
    value = os.environ.get("RAY_ADDRESS") or None
    return None if value and value.startswith(("http://", "https://")) else value


def starts_embedded(address: Optional[str]) -> bool:
    """No address and no RAY_ADDRESS to join: an embedded Ray."""
    return not (address or ray_address_env())


def host_port(address: str) -> tuple[str, str]:
    """("host", "port") of ``[scheme://]HOST[:PORT]``; IPv6 brackets removed, port may be ""."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():  # no port given
        host, port = address.split("://")[-1], ""
    return host.strip("[]"), port


def is_loopback(address: str) -> bool:
    host, _ = host_port(address)
    return host in ("localhost", "::1") or host.startswith("127.")


def resolve_address(address: Optional[str]) -> Optional[str]:
    """The cluster to join: ``address``, else RAY_ADDRESS (set for Ray Jobs and by users);
    "auto" means the cluster started on this machine with ``ray start``."""
    address = address or ray_address_env()
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


def unreachable(address: str, timeout_s: float = 5.0) -> Optional[str]:
    """Why nothing answers at HOST:PORT, or None when something does. Ray itself would retry
    an address where nothing listens for minutes before it gives up."""
    host, port = host_port(address)
    if not port:
        return None  # not HOST:PORT; let Ray judge it
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return None
    except OSError as error:
        return error.strerror or str(error) or type(error).__name__


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Hold back what Ray's C++ client writes to stderr (fd 2) while it connects: one warning
    per retry. Lines go into the yielded list; on success they are written out after all."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield lines
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
            lines.extend(text.splitlines())
            if text and not failed:
                sys.stderr.write(text)


@contextlib.contextmanager
def quick_embedded_start() -> Iterator[bool]:
    """While an embedded Ray starts, leave out what a run on its own Ray never uses and what
    only waits (yields True). ``ray.init`` has no option for any of it, so this replaces, for
    the length of the call, four functions of Ray's:
    - ``Node.start_api_server``: the API server (the dashboard's and the job and state APIs'
      backend) is started even with include_dashboard=False, and ray.init waits for it before
      it starts the raylet;
    - ``Node.start_monitor``: the autoscaler's monitor; a single embedded node has nothing to
      scale, and Ray's shutdown waits a second for it to die;
    - ``get_dashboard_dependency_error``: answering "missing" starts the node's dashboard agent
      as on a minimal Ray install (``pip install ray``): no HTTP server, no metrics agent the
      raylet waits for before it registers, and no import of aiohttp and OpenTelemetry in
      this process to find out whether they are installed;
    - ``services.get_node``: the driver's wait for its raylet to register is a C++ loop that
      looks once a second; looking every 20 ms first ends the wait when the raylet is there.
    Where a Ray version lacks one of them it changes nothing (yields False) and the node starts
    as Ray starts it. Measured: BENCHMARKS.md, issue 33. What is lost: ``ray list``, ``ray
    job``, the dashboard and Ray's metrics on a run's own embedded Ray; a Ray started with
    ``ray start --head`` (and ``--address``) has them all."""
    try:
        from ray._private import services, utils
        from ray._private.node import Node
    except ImportError:  # pragma: no cover - another Ray layout
        yield False
        return

    def no_api_server(self: Any, *args: Any, **kwargs: Any) -> None:
        self._webui_url = None  # what Ray records when its API server fails to start

    def no_monitor(self: Any, *args: Any, **kwargs: Any) -> None:
        """Starts nothing: the node records no monitor process, so its shutdown waits for none."""

    def as_minimal_install() -> Optional[ImportError]:
        return ImportError("distrl: an embedded Ray starts its dashboard agent as a minimal install does")

    wait_for_node = services.__dict__.get("get_node")

    def get_node(gcs_address: str, node_id: str, *args: Any, **kwargs: Any) -> Any:
        registered(gcs_address, node_id, timeout_s=30.0)
        return wait_for_node(gcs_address, node_id, *args, **kwargs)  # type: ignore[misc]

    replaced = [
        (Node, "start_api_server", no_api_server),
        (Node, "start_monitor", no_monitor),
        (utils, "get_dashboard_dependency_error", as_minimal_install),
        (services, "get_node", get_node),
    ]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in replaced]
    if any(original is None for _, _, original in saved):
        yield False
        return
    for owner, name, replacement in replaced:
        setattr(owner, name, replacement)
    try:
        yield True
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def registered(gcs_address: str, node_id: str, timeout_s: float) -> bool:
    """Wait until the GCS at ``gcs_address`` lists node ``node_id`` (hex), looking every
    20 ms; False after ``timeout_s``, or at once where this Ray's GCS client lacks the call
    (the caller's own wait then decides)."""
    from ray import NodeID
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    try:
        client, wanted = GcsClient(address=gcs_address), NodeID.from_hex(node_id)
    except Exception:  # an API this Ray lacks
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if wanted in client.get_all_node_info(timeout=5):
                return True
        except (AttributeError, TypeError):  # an API this Ray lacks
            return False
        except Exception:  # the GCS busy: look again
            pass
        time.sleep(0.02)
    return False


def connect(address: Optional[str], num_cpus: float, verbose: bool = False) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS), or start an embedded Ray declaring
    at least ``num_cpus`` CPUs. Returns True when this process started Ray (and must stop it).

    An embedded Ray keeps its notices to itself unless ``verbose``: they speak to whoever runs
    a cluster (token authentication is on, how to turn it off), and on a run that is its own
    cluster they would only break distrl's first lines. Joining a cluster shows them."""
    import ray

    if ray.is_initialized():
        return False
    common: dict[str, Any] = dict(logging_level="WARNING", log_to_driver=True, configure_logging=True)
    address = resolve_address(address)
    if address:
        if is_loopback(address):
            prefer_loopback()  # a cluster on this machine: keep talking over 127.0.0.1
        why = unreachable(address)
        if why:
            raise DistrlError(
                f"Could not reach a Ray cluster at {address!r} ({why}). Check that the head node is up "
                f"(`ray status` there) and that the address is its GCS address HOST:6379 (not the "
                f"dashboard's 8265), or leave out --address to train on an embedded local Ray."
            )
        from ray.exceptions import AuthenticationError

        from distrl.jobs import token_message

        noise: list[str] = []
        try:
            with captured_stderr() as noise:
                ray.init(address=address, **common)
        except AuthenticationError:  # token mode on here, but no token file
            raise DistrlError(token_message(repr(address))) from None
        except (ConnectionError, RuntimeError, ValueError) as error:
            if any("InvalidAuthToken" in line or "Unauthenticated" in line for line in noise):
                raise DistrlError(token_message(repr(address))) from None
            raise DistrlError(
                f"Could not join the Ray cluster at {address!r}: {str(error).splitlines()[0]}. "
                f"Check that the head node is up (`ray status`), that the address is the GCS "
                f"address HOST:6379 (or `auto` on a cluster node), and that RAY_AUTH_MODE=token is "
                f"exported here like on the nodes, with the cluster's token in ~/.ray/auth_token (or "
                f"RAY_AUTH_TOKEN_PATH). Leave out --address to train on an embedded local Ray."
            ) from None
        return False
    prefer_loopback()
    machine_cpus = os.cpu_count() or 1
    # "local": a new embedded instance, even when a `ray start` cluster runs on this machine.
    if not verbose:
        common["logging_level"] = "ERROR"
    with quick_embedded_start():
        ray.init(address="local", num_cpus=max(machine_cpus, int(num_cpus + 0.999)), include_dashboard=False, **common)
    return True


def stop_embedded() -> None:
    """Stop the embedded Ray this process started. Ray's own shutdown sends each of its
    processes SIGTERM and gives it a second before SIGKILL; its autoscaler monitor, which an
    embedded single-machine Ray never uses, always takes that whole second (1.0 of the
    1.3 s ``ray.shutdown`` took here, BENCHMARKS.md, issue 33). ``connect`` starts none
    where it can (``quick_embedded_start``); where one runs it is ended first, one
    second less for every run, and the rest of the shutdown stays Ray's graceful one."""
    import ray
    from ray._private import ray_constants, worker

    node = getattr(worker, "_global_node", None)
    for info in node.all_processes.get(ray_constants.PROCESS_TYPE_MONITOR, []) if node else []:
        if info.process.poll() is None:
            info.process.kill()
            info.process.wait(timeout=5)
    ray.shutdown()


def local_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    return int(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def alive_nodes() -> dict[str, float]:
    """``{node_id: CPUs}`` of the nodes alive now."""
    import ray

    from distrl.runtime import backend

    if backend.serial():
        return {backend.LOCAL_NODE: float(local_cores())}

    return {node["NodeID"]: float(node["Resources"].get("CPU", 0.0)) for node in ray.nodes() if node["Alive"]}


def worker_slots(cpus_per_worker: float, free_only: bool, head_reserve: float = 0.0) -> int:
    """How many workers of ``cpus_per_worker`` CPUs fit, node by node: a 3-CPU node holds
    one 2-CPU worker, not one and a half. ``free_only`` counts the CPUs nobody holds now
    (other runs, this run's own actors); else each node's total, less ``head_reserve`` on
    the head node (for the learner, before it shows in the free counts)."""
    import ray
    from ray._private import state

    from distrl.runtime import backend

    if backend.serial():
        return max(1, int((local_cores() - head_reserve + 1e-9) // cpus_per_worker))
    free = state.available_resources_per_node() if free_only else {}
    slots = 0
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        resources = node["Resources"]
        cpus = free.get(node["NodeID"], {}).get("CPU", 0.0) if free_only else resources.get("CPU", 0.0)
        if not free_only and "node:__internal_head__" in resources:
            cpus -= head_reserve
        slots += max(0, int((cpus + 1e-9) // cpus_per_worker))
    return slots


def in_placement_group() -> bool:
    """Is this run inside a placement group that captures its actors (a Ray Tune trial)?
    Then the group's bundles say where everything goes, and an actor given a scheduling
    strategy of its own would leave the group and wait for CPUs the group already holds."""
    from ray.util import get_current_placement_group

    from distrl.runtime import backend

    return not backend.serial() and get_current_placement_group() is not None


def in_bundle(index: int) -> dict:
    """Actor options that place it in bundle ``index`` of the placement group this run is
    in (``distrl.tune`` makes it: 0 the trial's driver, 1 the learner, then one per rollout
    worker, then the evaluator's when it reserves CPUs). Pinned, because an actor free to
    take any bundle that fits may take one sized for another (a 0.5-CPU learner in a worker's
    0.5-CPU bundle), leaving that one nowhere to go."""
    from ray.util import get_current_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = get_current_placement_group()
    assert group is not None, "in_bundle() is for runs inside a placement group"
    if index < 0:
        index += group.bundle_count
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)}


def spread() -> dict:
    """Actor options that spread rollout workers over the nodes (none inside a placement group)."""
    from distrl.runtime import backend

    return {} if in_placement_group() or backend.serial() else {"scheduling_strategy": "SPREAD"}


def on_head_node() -> dict:
    """Actor options that place it on the head node when it fits there: the learner, the
    parameter server and the replay shards hold the run's state, and the head is the one
    node that stays while worker nodes come and go. Soft: elsewhere if the head is full.
    None inside a placement group (``in_placement_group``)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from distrl.runtime import backend

    if in_placement_group() or backend.serial():
        return {}
    for node in ray.nodes():
        if node["Alive"] and "node:__internal_head__" in node["Resources"]:
            return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)}
    return {}


def learner_nodes(count: int, cpus_per_learner: float) -> list[dict]:
    """Actor options for ``count`` CPU learners, spread over the nodes: the first on the head
    (``on_head_node``), each next one on the node with the fewest learners so far (the head
    last among equals) that has ``cpus_per_learner`` CPUs. Soft, as on the head: elsewhere if
    that node is full. Ray's SPREAD strategy may put both of two learners on one node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options = [on_head_node()]
    if count == 1 or in_placement_group():
        return options * count
    alive = [node for node in ray.nodes() if node["Alive"]]
    head = next((node["NodeID"] for node in alive if "node:__internal_head__" in node["Resources"]), None)
    placed = {node["NodeID"]: 0 for node in alive if node["Resources"].get("CPU", 0.0) >= cpus_per_learner}
    if head in placed:
        placed[head] = 1
    for _ in range(count - 1):
        if not placed:
            options.append({})
            continue
        # Fewest learners first; among equals, nodes other than the head.
        node = min(placed, key=lambda n: (placed[n], n == head))
        placed[node] += 1
        options.append({"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)})
    return options


def request_cpus(bundles: list[dict[str, float]]) -> None:
    """Ask the autoscaler for these resource bundles (a cluster launched from a YAML then
    adds nodes up to its max_workers). On a cluster without an autoscaler it does nothing."""
    from ray.autoscaler.sdk import request_resources

    from distrl.runtime import backend

    if not backend.serial():
        request_resources(bundles=bundles)


def withdraw_cpu_request() -> None:
    """Take back ``request_cpus``: the request stands until replaced, and would keep a cloud
    cluster at full size after the run."""
    from ray.autoscaler.sdk import request_resources

    from distrl.runtime import backend

    if not backend.serial():
        request_resources(bundles=[])


def cluster_cpus() -> float:
    import ray

    from distrl.runtime import backend

    if backend.serial():
        return float(local_cores())
    return float(ray.cluster_resources().get("CPU", 0.0))


def cluster_gpus() -> float:
    import ray
    import torch

    from distrl.runtime import backend

    if backend.serial():
        return float(torch.cuda.device_count())
    return float(ray.cluster_resources().get("GPU", 0.0))
