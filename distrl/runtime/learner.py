"""Learner: owns the model and the algorithm (its optimizer) on CUDA when there is one,
runs the updates its data flow feeds it, and publishes each new version of the weights."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import numpy as np
import ray
import torch

from distrl.algos import ALGORITHMS
from distrl.algos.interface import Progress
from distrl.algos.parallel import Shard
from distrl.models import NatureCNN, build_model
from distrl.runtime import backend
from distrl.runtime.failures import LearnerRestarted
from distrl.runtime.phases import CallClock
from distrl.runtime.weights import get_weights


def apply_memory_format(model: torch.nn.Module, runtime: Any) -> None:
    """The learner's copy of the model in the memory order ``runtime.learner_channels_last``
    asks for; a function of its own so that ``scripts/bench.py`` times the learner's update
    with exactly the levers a run turns on."""
    if runtime.learner_channels_last:
        for cnn in (module for module in model.modules() if isinstance(module, NatureCNN)):
            cnn.use_channels_last()


def splits_well(model: torch.nn.Module) -> bool:
    """Do the model's ops gain from several torch threads? A CNN's do; a model without
    convolutions (an MLP, with or without a recurrent core) has ops too small to split, and
    ``runtime.learner_threads: auto`` gives it one thread (``Learner._threads``)."""
    return any(isinstance(module, torch.nn.Conv2d) for module in model.modules())


def precision(runtime: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast an update runs under, by ``runtime.learner_precision``."""
    if runtime.learner_precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# How long a learner waits in a gradient sum for the others before it fails: a learner that
# died leaves the rest waiting there (the driver restores them all).
COLLECTIVE_TIMEOUT_S = 120


@dataclass
class UpdateReport:
    """What an update tells the driver: the algorithm's statistics, how many updates it
    counts for (gradient steps, for flows that take several per call), the transitions it
    learned from, the mean policy lag of the data it used, and the fragments it could not
    fetch (lost with their node)."""

    stats: dict[str, float] = field(default_factory=dict)
    updates: int = 1
    consumed_steps: int = 0
    weights: Optional[dict[str, np.ndarray]] = None  # the new version's, for a flow without broadcast
    published: Optional[tuple[int, Any]] = None  # (version, weights ref) of a broadcast, for the next requests
    policy_lag: float = 0.0
    lost_fragments: int = 0
    version: int = 0
    skipped_steps: int = 0  # gradient steps skipped for a NaN or Inf loss or gradient
    nonfinite_in_a_row: int = 0  # updates in a row that ended on such a step
    phases: dict[str, float] = field(default_factory=dict)  # seconds of this call by phase (runtime/phases.py)


class LearnerSide(Protocol):
    """A data flow's learner side (``runtime/flows/``): what one ``Learner.update`` call does
    with its input (fragment refs, a number of replay steps, a worker's gradients). It travels
    to the learner when the learner is created.

    ``broadcast``: each new version is put in the object store once; the report hands its ref
    to the driver, whose next requests bring it to the workers, and the parameter server keeps
    it for anyone who asks outside those requests. Without it the new weights ride back in the
    report to the one caller that needs them (a worker that pushed gradients)."""

    broadcast: bool

    def update(self, learner: "Learner", inputs: Any, progress: Progress) -> UpdateReport: ...


@ray.remote
class Learner:
    """Created before the environment's spaces are known, so that its process starts (and
    imports torch) while the rollout workers build their environments; ``setup`` builds the
    model once the first worker reports the spaces."""

    def __init__(self, config: Any):
        # Actor handles reach the learner in ``setup``, not here: Ray restarts an actor from
        # its constructor's arguments, and cannot promise to still hold handles among them.
        self.config = config
        self.published: Optional[tuple[int, Any]] = None
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.ready = False  # until setup: also after Ray restarted this actor's process
        self.clock = CallClock()  # where this learner's time goes, update by update
        # This learner's place among the run's data-parallel learners (``join``), and how many
        # of them share its node's cores.
        self.shard = Shard()
        self.sharing = 1
        # torch's optimizers import torch._dynamo when the first one is built (0.7 s here):
        # imported now, while the workers start, it is off the path to the first update.
        importlib.import_module("torch._dynamo")

    # ------------------------------------------------------------ data-parallel learners

    def node(self) -> str:
        """The node this learner runs on (how many learners share its cores)."""
        return backend.node_id()

    def rendezvous(self) -> str:
        """The first learner's address for the others to join its process group: this node's
        IP and a port free now (``tcp://IP:PORT``)."""
        ip = ray.util.get_node_ip_address()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
            port = probe.getsockname()[1]
        return f"tcp://{ip}:{port}"

    def join(self, rank: int, size: int, address: str, sharing: int) -> None:
        """Join the run's ``size`` learners as ``rank`` (all of them call this at once; it
        returns when all have): a ``torch.distributed`` group, NCCL on GPUs, else gloo on the
        network interface Ray uses on this node (loopback for a cluster on 127.0.0.1).
        ``sharing``: the learners on this node, which split its cores."""
        nccl = self.device.type == "cuda"
        if not nccl and "GLOO_SOCKET_IFNAME" not in os.environ:
            interface = _interface_of(ray.util.get_node_ip_address())
            if interface:
                os.environ["GLOO_SOCKET_IFNAME"] = interface
        self.shard = Shard.join(rank, size, address, "nccl" if nccl else "gloo", COLLECTIVE_TIMEOUT_S)
        self.sharing = max(1, sharing)

    def digest(self) -> str:
        """A fingerprint of the weights, bit for bit: data-parallel learners must agree on it."""
        self._require_ready()
        fingerprint = hashlib.sha256()
        for tensor in self.model.state_dict().values():
            fingerprint.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return fingerprint.hexdigest()

    def setup(
        self,
        observation_space: Any,
        action_space: Any,
        parameter_server: Any,
        side: LearnerSide,
        busy_cpus: Optional[dict[str, float]] = None,
        state: Optional[dict[str, Any]] = None,
    ) -> str:
        """Build the model and the algorithm, publish version 0; returns the device's name.
        ``side``: what each ``update`` does, from the run's data flow. ``busy_cpus``: per node,
        the CPUs rollout workers keep busy while the learner updates (what
        ``runtime.learner_threads: auto`` leaves them). ``state``: after Ray restarted the
        process, the state to go on from, loaded before any call can see this learner ready
        (an A3C worker's gradient must not land on the fresh model)."""
        config = self.config
        self.parameter_server, self.side = parameter_server, side
        torch.manual_seed(config.seed)
        spec = ALGORITHMS[config.algo]
        self.model = build_model(config.model, observation_space, action_space, spec.model_head).to(self.device)
        threads = self._threads(busy_cpus or {})
        apply_memory_format(self.model, config.runtime)
        self.algorithm = spec.algorithm_class(config.algo_config, self.model, config.stop.env_steps)
        if not self.shard.alone:
            self.algorithm.shard = self.shard
            self.shard.same_start(list(self.model.state_dict().values()))
        self.version = 0
        self.updates = 0  # what the flow counts as updates (versions, or gradient steps)
        self.nonfinite_in_a_row = 0
        if state is not None:
            self._load(state)
        self.publish(wait=True)
        self.ready = True
        self.clock.finish({}, 0.0)  # from here on, the time before an update is idle
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return f"cpu ({threads} thread{'s' if threads > 1 else ''})"

    def _threads(self, busy_cpus: dict[str, float]) -> int:
        """Ray starts an actor with one thread per CPU it reserved; a CPU learner takes what
        ``runtime.learner_threads`` says instead. ``auto`` gives a model without convolutions
        one thread: its ops are too small to split (CartPole's 64-64 MLPs on 256 samples, 2
        cores: one thread updates 1.15x as fast with the workers waiting, 1.5x with them
        sampling beside it; BENCHMARKS.md, issue 33), where a CNN's update gains from every
        core the workers leave it (Pong: 0.18 s per 1,000 steps on 2 threads, 0.249 on 1)."""
        wanted = self.config.runtime.learner_threads
        if wanted == "auto" and not splits_well(self.model):
            wanted = 1
        if wanted == "auto":
            from distrl.runtime import cluster

            node = backend.node_id()
            node_cpus = cluster.alive_nodes().get(node, float(torch.get_num_threads()))
            # An embedded Ray may declare more CPUs than the machine has (a learner and two
            # workers on 2 cores declare 3): never more threads than cores.
            wanted = max(1, min(cluster.local_cores(), int(node_cpus - busy_cpus.get(node, 0.0) + 1e-9)))
            # Learners on one node split its cores (their reserved CPUs are not busy_cpus).
            wanted = max(1, min(wanted, cluster.local_cores() // self.sharing))
        if self.device.type == "cpu":
            torch.set_num_threads(int(wanted))
        return torch.get_num_threads()

    def publish(self, wait: bool = False) -> int:
        """Put the weights in the object store once and hand the ref to the ParameterServer.
        ``wait`` (set-up and restore, before any worker holds weights): return once the
        ParameterServer holds them, so that a worker set up after this gets them from it.
        During training nobody waits: the driver passes the ref on with its requests. Of
        several learners only the first publishes: they hold the same weights."""
        if self.shard.rank > 0:
            return self.version
        weights_ref = backend.put(get_weights(self.model))
        self.published = (self.version, weights_ref)
        done = self.parameter_server.publish.remote([weights_ref], self.version)
        if wait:
            backend.get(done)
        return self.version

    def republish(self) -> None:
        """Publish the current weights again (to a restarted parameter server); nothing while
        this learner waits for its own restore, which publishes."""
        if self.ready:
            self.publish()

    def _require_ready(self) -> None:
        if not self.ready:
            raise LearnerRestarted("the learner was restarted and is waiting for its state")

    def newest_weights(self) -> Optional[tuple[int, Any]]:
        """``(version, ref)`` of the weights published last: the driver's first requests bring
        them to the workers."""
        self._require_ready()
        return self.published

    def is_ready(self) -> bool:
        """False after Ray restarted the process: the driver has a state to restore."""
        return self.ready

    def process(self) -> int:
        """This process's id: which of Ray's restarts of this actor answers."""
        return os.getpid()

    def update(self, inputs: Any, progress: Progress) -> UpdateReport:
        """One update by this run's flow; a new version is published when the weights changed."""
        self._require_ready()
        idle = self.clock.start()
        self.model.train()
        skipped_before = getattr(self.algorithm, "nonfinite_steps", 0)
        with precision(self.config.runtime, self.device):
            report = self.side.update(self, inputs, progress)
        report.stats = self.shard.mean_stats(report.stats)  # each learner's are its share's
        report.skipped_steps = getattr(self.algorithm, "nonfinite_steps", 0) - skipped_before
        ended_nonfinite = report.skipped_steps > 0 and getattr(self.algorithm, "nonfinite_in_a_row", 0) > 0
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if ended_nonfinite else 0
        report.nonfinite_in_a_row = self.nonfinite_in_a_row
        if report.updates:
            self.version += 1
            self.updates += report.updates
            before_publish = time.perf_counter()
            if self.side.broadcast:
                self.publish()
                report.published = self.published
            else:
                report.weights = get_weights(self.model)
            report.phases["publish"] = time.perf_counter() - before_publish
        report.version = self.version
        report.phases = self.clock.finish(report.phases, idle)
        return report

    def get_state(self) -> dict[str, Any]:
        """Model and algorithm state on the CPU, for a checkpoint written by the driver."""
        self._require_ready()
        model_state = {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()}
        return {
            "model": model_state,
            "algorithm": _to_cpu(self.algorithm.state_dict()),
            "version": self.version,
            "updates": self.updates,
        }

    def set_state(self, state: dict[str, Any]) -> int:
        self._load(state)
        return self.publish(wait=True)

    def _load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.algorithm.load_state_dict(state["algorithm"])
        self.version = int(state["version"])
        self.updates = int(state.get("updates", state["version"]))


def _interface_of(ip: str) -> Optional[str]:
    """The network interface that holds ``ip`` (psutil, which Ray installs), or None."""
    try:
        import psutil

        for name, addresses in psutil.net_if_addrs().items():
            if any(address.address == ip for address in addresses):
                return name
    except Exception:  # no psutil, or an interface table it cannot read
        pass
    return None


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value
