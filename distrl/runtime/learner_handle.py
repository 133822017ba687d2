"""The driver's side of the learner: the one object that talks to the ``Learner`` actor. It
submits updates and collects their reports, keeps a copy of the learner's state (what a
restarted learner gets), restores a learner whose process died, and holds the newest weights
version the driver knows of. Learner death is handled here and nowhere else: a flow that
collects a report gets None when the learner died during the update, and the steps it was
given are counted as lost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from distrl.algos.interface import Progress
from distrl.errors import DistrlError
from distrl.metrics import MetricsWriter
from distrl.runtime import backend, cluster
from distrl.runtime.failures import LearnerDied, get_from_learner, learner_died, task_failure
from distrl.runtime.learner import Learner, UpdateReport
from distrl.runtime.tally import Tally
from distrl.runtime.worker_pool import WorkerPool


class LearnerHandle:
    def __init__(self, config: Any, out_dir: Path, tally: Tally, metrics: MetricsWriter, pool: WorkerPool):
        """``pool``: the run's workers; a restored learner's version goes past every version
        they may hold."""
        self.config = config
        self.out_dir = out_dir
        self.tally = tally
        self.metrics = metrics
        self.pool = pool
        self.actor: Any = None  # the Learner actor, from create(); the first of several
        # With runtime.num_learners > 1, the others (algos/parallel.py): they take their share of
        # every update and hold the same weights; the first one publishes and keeps the state.
        self.peers: list[Any] = []
        self.peer_updates: dict[Any, list[Any]] = {}  # the peers' refs of each submitted update
        self.nodes: list[str] = []  # the node of each learner, with peers
        self.processes: list[int] = []  # the process of each learner in the group, with peers
        self.setup_args: tuple = ()  # what setup() gave it, for a restarted process
        self.parameter_server: Any = None
        self.snapshot: dict[str, Any] = {}  # the newest copy of its state in this process
        self.snapshot_time = 0.0
        # The newest (version, weights ref) the learner published: the flows pass it on with
        # their requests, so that workers need no round trip of their own.
        self.latest_weights: Optional[tuple[int, Any]] = None
        self.version = 0  # the newest version any report showed: versions only go up

    # ---------------------------------------------------------------- set-up

    @staticmethod
    def gpus(config: Any) -> float:
        """The GPUs the learner reserves: ``auto`` takes one when the cluster has one."""
        wanted = config.runtime.num_gpus_per_learner
        if wanted == "auto":
            return 1.0 if cluster.cluster_gpus() >= 1 else 0.0
        return float(wanted)

    def create(self, gpus: float, placement: dict) -> Any:
        """Start the actor (and its peers); its process imports torch while the workers build
        their envs. Ray restarts a learner whose process dies (same handle, fresh process);
        ``restore`` then gives it the newest state this handle holds. ``placement``: the first
        learner's; the peers go one per GPU, or spread over the nodes' CPUs."""
        runtime = self.config.runtime
        count = runtime.num_learners
        have = cluster.cluster_gpus() if gpus and count > 1 else 0.0
        if gpus and count > 1 and have < gpus * count:
            # Ray would wait for the missing GPUs for ever, with the run silent.
            raise DistrlError(
                f"runtime.num_learners={count} learners of {gpus:g} GPU each need {gpus * count:g} GPUs; the "
                f"cluster has {have:g}. Use fewer learners, a smaller "
                f"runtime.num_gpus_per_learner, or runtime.num_gpus_per_learner=0 for CPU learners."
            )
        placements = [placement] + (
            [{}] * (count - 1) if gpus else cluster.learner_nodes(count, runtime.num_cpus_per_learner)[1:]
        )
        learners = [
            backend.actor(Learner)
            .options(
                num_cpus=runtime.num_cpus_per_learner,
                num_gpus=gpus,
                max_restarts=runtime.max_learner_restarts,
                **where,
            )
            .remote(self.config)
            for where in placements
        ]
        self.actor, self.peers = learners[0], learners[1:]
        return self.actor

    def placed(self, device: str) -> str:
        """Where the learners run, for the run's first line."""
        if not self.peers:
            return f"learner on {device}"
        return f"{len(self.peers) + 1} learners on {len(set(self.nodes))} node(s), each on {device}"

    def _form_group(self) -> None:
        """The learners join one torch.distributed group (all at once: each waits for all)."""
        learners = [self.actor, *self.peers]
        nodes = self.nodes = backend.get([learner.node.remote() for learner in learners])
        self.processes = backend.get([learner.process.remote() for learner in learners])
        address = backend.get(self.actor.rendezvous.remote())
        backend.get(
            [
                learner.join.remote(rank, len(learners), address, nodes.count(node))
                for rank, (learner, node) in enumerate(zip(learners, nodes))
            ]
        )

    def setup(
        self,
        spaces: tuple[Any, Any],
        parameter_server: Any,
        side: Any,
        busy_cpus: dict[str, float],
        resume_state: Optional[dict[str, Any]],
    ) -> str:
        """Build the model (and load a checkpoint's state); returns the device's name.
        ``side``: the flow's learner side; ``busy_cpus``: what the workers keep busy during
        updates, per node (``Learner.setup``)."""
        self.parameter_server = parameter_server
        self.setup_args = (*spaces, parameter_server, side, busy_cpus)
        if self.peers:
            self._form_group()
        peers = [peer.setup.remote(*self.setup_args) for peer in self.peers]
        device = get_from_learner(
            self.actor.setup.remote(*self.setup_args), self.out_dir, "The learner could not build its model"
        )
        get_from_learner(peers, self.out_dir, "The learner could not build its model")
        if resume_state is not None:
            try:
                backend.get([learner.set_state.remote(resume_state) for learner in (self.actor, *self.peers)])
            except RayTaskError as error:
                raise task_failure(
                    error, "The checkpoint does not fit this run's model (was model.* or env changed?)"
                ) from None
        self.take_snapshot()
        self.latest_weights = backend.get(self.actor.newest_weights.remote())
        return device

    # ---------------------------------------------------------------- updates

    def submit(self, inputs: Any, env_steps: int) -> Any:
        """Ask for one update (of every learner); returns the first learner's ref for ``result``."""
        progress = Progress(env_steps=env_steps)
        update_ref = self.actor.update.remote(inputs, progress)
        if self.peers:
            self.peer_updates[update_ref] = [peer.update.remote(inputs, progress) for peer in self.peers]
        return update_ref

    def result(self, update_ref: Any, sent_steps: int = 0) -> Optional[UpdateReport]:
        """The report of a finished update, or None when the learner died during it: then it
        is restored, and ``sent_steps`` (the steps it was given) are lost."""
        try:
            report: UpdateReport = self._collect(update_ref)
        except LearnerDied:
            self.lost_with_learner(sent_steps)
            return None
        self.seen(report)
        return report

    def _collect(self, update_ref: Any) -> UpdateReport:
        """The first learner's report of an update, once every learner has finished it. When one
        of several died, the others fail in their gradient sum (its connections closed): that
        is the death, not their failure."""
        peers = self.peer_updates.pop(update_ref, [])
        if not peers:
            return get_from_learner(update_ref, self.out_dir)
        died, failures, report = False, [], None
        for rank, ref in enumerate([update_ref, *peers]):
            try:
                result = get_from_learner(ref, self.out_dir)
            except LearnerDied:
                died = True
            except DistrlError as error:
                failures.append(error)
            else:
                report = result if rank == 0 else report
        if died:
            raise learner_died(self.out_dir)
        if failures:
            raise failures[0]
        assert report is not None
        return report

    def seen(self, report: UpdateReport) -> None:
        """A report that reached the driver some other way (an A3C worker's reply)."""
        self.version = max(self.version, report.version)
        latest = self.latest_weights
        if report.published is not None and (latest is None or report.published[0] > latest[0]):
            # The next requests bring it to the workers. Not an older one: an update that
            # finished before the learner died and was restored with a newer version.
            self.latest_weights = report.published

    def lost_with_learner(self, env_steps: int) -> None:
        """The learner died with ``env_steps`` of counted fragments it had not learned from."""
        self.restore()
        self.tally.lost(env_steps)

    # ---------------------------------------------------------------- state

    def take_snapshot(self) -> None:
        """Keep a copy of the learner's state in this process: what a restarted learner gets.
        The learner's own object store would not do: its objects die with it."""
        try:
            self.keep(get_from_learner(self.actor.get_state.remote(), self.out_dir))
            self.check_agreement()
        except LearnerDied:
            self.restore()  # from the previous snapshot; the next one is due later

    def check_agreement(self) -> None:
        """Several learners hold the same weights, bit for bit (they apply the same summed
        gradients); a run whose learners drifted apart stops here rather than train on."""
        if not self.peers:
            return
        digests = [get_from_learner(learner.digest.remote(), self.out_dir) for learner in (self.actor, *self.peers)]
        if len(set(digests)) > 1:
            raise DistrlError(
                f"The {len(digests)} data-parallel learners no longer hold the same weights (learners "
                f"{[rank for rank, digest in enumerate(digests) if digest != digests[0]]} differ from the first). "
                "This is a bug in distrl; please report it with the run's config.yaml."
            )

    def keep(self, state: dict[str, Any]) -> None:
        self.snapshot, self.snapshot_time = state, time.monotonic()

    def state(self) -> dict[str, Any]:
        """The learner's state now, for a checkpoint (restoring a dead learner first); also
        kept as the newest snapshot."""
        try:
            state = get_from_learner(self.actor.get_state.remote(), self.out_dir)
            self.check_agreement()  # a peer that died shows here
        except LearnerDied:
            self.restore()
            state = get_from_learner(self.actor.get_state.remote(), self.out_dir)
        self.keep(state)
        # The learner counts every update it applied, also one this driver has not collected
        # yet (after Ctrl-C with an update in flight).
        self.tally.applied_updates(int(state["updates"]))
        return state

    def republish(self) -> None:
        """A restarted parameter server comes back empty: publish the weights to it again."""
        self.actor.republish.remote()

    def _call(self, method: Any, *args: Any, patience: float = 60.0) -> Any:
        """A call on a learner that Ray may still be restarting: while its death is being
        noticed a call can fail at once, so try again for up to ``patience`` seconds (also the
        longest wait for an answer: a learner that cannot be placed again never answers)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return backend.get(method.remote(*args), timeout=max(deadline - time.monotonic(), 1.0))
            except RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def restore(self) -> None:
        """After the learner's process died: wait for Ray's restart, build the model again and
        load the newest snapshot. The version goes on past the newest one anyone may hold (the
        reports, the parameter server, and, A3C, one reply per worker that the driver has not
        read yet), so versions only increase; ``updates`` stays the driver's count, as
        updates applied and then lost did happen. A report from a learner already restored
        (A3C: several workers see one death) changes nothing.

        Of several learners, the others lost their group with the dead one (and may still wait
        in a gradient sum): every learner's process is restarted, they form a new group and all
        load the snapshot, as one restore."""
        counters, limit = self.tally.counters, self.config.runtime.max_learner_restarts
        gave_up = learner_died(
            self.out_dir, f"after {counters.learner_restarts} restart(s); runtime.max_learner_restarts is {limit}"
        )
        learners = [self.actor, *self.peers]
        try:
            if self.peers:
                if counters.learner_restarts >= limit:
                    raise gave_up
                # Only the processes of the lost group are killed: one that Ray has already
                # restarted (the one that died) would be restarted again, after it might have
                # answered for the new group. Ray delivers a kill later than the call returns,
                # so the old process may still answer a while; the group forms once every
                # learner answers from a new one.
                deadline = time.monotonic() + 60.0
                for learner, old in zip(learners, self.processes):
                    if self._call(learner.process) == old:
                        backend.kill(learner, no_restart=False)
                for learner, old in zip(learners, self.processes):
                    while self._call(learner.process) == old:
                        if time.monotonic() > deadline:
                            raise gave_up
                        time.sleep(0.1)
            else:
                # Past the limit Ray does not restart it either: only a learner already restored
                # (a second report of one death) answers.
                if self._call(self.actor.is_ready, patience=60.0 if counters.learner_restarts < limit else 0.0):
                    return
                if counters.learner_restarts >= limit:
                    raise gave_up
            state = dict(self.snapshot)
            published = backend.get(self.parameter_server.get_version.remote())
            version = max(int(state["version"]), self.version, published) + self.pool.size + 1
            state["version"], state["updates"] = version, counters.learner_updates
            if self.peers:
                self._form_group()
                backend.get([learner.setup.remote(*self.setup_args, state) for learner in learners])
            else:
                self._call(self.actor.setup, *self.setup_args, state)
            self.latest_weights = self._call(self.actor.newest_weights)
        except (RayActorError, GetTimeoutError):
            raise gave_up from None
        except RayTaskError as error:
            raise task_failure(error, "The restarted learner could not load its state") from None
        self.version = version
        restarts = self.tally.restarted("learner")
        restarted = (
            "Ray restarted it and it goes on"
            if not self.peers
            else f"Ray restarted all {len(learners)} learners and they go on"
        )
        self.metrics.message(
            f"the learner's process died; {restarted} from a copy of its state taken "
            f"{time.monotonic() - self.snapshot_time:.0f} s earlier (restart {restarts}, now at version {version})"
        )
