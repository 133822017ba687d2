"""Trainer: a run's lifecycle and its one loop. Starts or joins Ray, creates the parameter
server, the flow's actors, the learner and the worker pool, then iterates the flow's updates
and after each does the run's duties (the table in ``_duties``); on the way out it writes the last
checkpoint and releases what it took. It knows no algorithm and no flow: the flow the
algorithm registered decides what is asked of workers and learner (``runtime/flows/``)."""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ray.exceptions import RayActorError, RayTaskError

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.checkpoint import CheckpointWriteError
from distrl.config import Config
from distrl.metrics import MetricsWriter
from distrl.models import model_notes
from distrl.runtime import backend, cluster, phases
from distrl.runtime.evaluator import Evaluator
from distrl.runtime.flows import Driving, Flow, flow_for
from distrl.runtime.learner_handle import LearnerHandle
from distrl.runtime.parameter_server import ParameterServer
from distrl.runtime.startup import StartupClock
from distrl.runtime.tally import Tally, restart_counter
from distrl.runtime.worker_pool import WorkerPool


@dataclass
class Duty:
    """One of the run's periodic duties: due every ``every_s`` seconds, or at once after an
    event named in ``also_on``; not run after one in ``unless``. ``run`` gets the events of
    this round and may add its own (returns its name, or None)."""

    name: str
    every_s: float
    run: Callable[[set[str]], Optional[str]]
    also_on: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    last: float = 0.0

    def due(self, now: float, events: set[str]) -> bool:
        return not events.intersection(self.unless) and (
            now - self.last >= self.every_s or bool(events.intersection(self.also_on))
        )


class Trainer:
    def __init__(
        self,
        config: Config,
        out_dir: Path,
        resume_state: Optional[dict[str, Any]] = None,
        on_report: Optional[Callable[[dict[str, Any]], None]] = None,
        verbose: bool = False,
    ):
        """``on_report``: called with each progress record (the API's hook, and Tune's);
        ``verbose``: an embedded Ray shows its own notices too."""
        self.config = config
        self.out_dir = out_dir
        self.resume_state = resume_state
        self.on_report = on_report
        self.verbose = verbose
        self.last_report: dict[str, Any] = {}
        self.startup = StartupClock()  # OUT/startup.json: the seconds before training and after it
        self.tally = Tally(config, resume_state)
        # Opened by run(), which owns the run folder; each of the below exists from _start().
        self.metrics: Optional[MetricsWriter] = None
        self.parameter_server: Any = None
        self.flow: Optional[Flow] = None
        self.pool: Optional[WorkerPool] = None
        self.learner: Optional[LearnerHandle] = None
        self.incarnations: dict[str, list[Any]] = {}  # of the actors Ray restarts empty, by kind
        # With eval.every_env_steps: the evaluation actor, the round it plays, the step count
        # at which the next is due, and the newest finished round.
        self.evaluator: Any = None
        self.evaluation_ref: Any = None
        self.next_evaluation = 0
        self.evaluation: Optional[dict[str, Any]] = None
        self.stop_reason: Optional[str] = None
        self.duties: list[Duty] = []

    # ---------------------------------------------------------------- set-up

    def _start(self, metrics: MetricsWriter) -> None:
        """Create the actors in the order that starts processes soonest: the learner before
        the workers, so that its CPU on the head is taken first and its process imports torch
        while the workers build their environments."""
        config, runtime = self.config, self.config.runtime
        head = cluster.on_head_node()
        # Ray restarts a dead parameter server, empty, and retries the calls made to it.
        self.parameter_server = (
            backend.actor(ParameterServer)
            .options(max_restarts=runtime.max_learner_restarts, max_task_retries=-1, **head)
            .remote()
        )
        flow = self.flow = flow_for(config, ALGORITHMS[config.algo])
        learner_gpus = LearnerHandle.gpus(config)
        pool = self.pool = WorkerPool(
            config,
            self.parameter_server,
            None,
            metrics,
            self.tally,
            learner_cpu_reserve=0.0 if learner_gpus else runtime.num_cpus_per_learner * runtime.num_learners,
        )
        count = pool.initial_count()
        flow.create_actors(count)
        learner = self.learner = LearnerHandle(config, self.out_dir, self.tally, metrics, pool)
        # A GPU learner goes wherever the GPU is; a CPU learner stays on the head node;
        # a Tune trial's learner has bundle 1 of the trial's placement group (distrl.tune).
        placement = cluster.in_bundle(1) if cluster.in_placement_group() else ({} if learner_gpus else head)
        pool.task = flow.worker_task(learner.create(learner_gpus, placement))
        spaces = pool.start(count)
        self.startup.mark("workers: processes and envs")
        busy = pool.busy_cpus() if flow.workers_busy_during_updates() else {}
        device = learner.setup(spaces, self.parameter_server, flow.learner_side(), busy, self.resume_state)
        self.startup.mark("learner: model and first weights")
        self.incarnations = self._incarnations()
        if config.eval.every_env_steps is not None:
            # In a Tune trial, an evaluator that reserves CPUs has the group's last bundle.
            placed = cluster.in_bundle(-1) if config.eval.num_cpus and cluster.in_placement_group() else {}
            self.evaluator = (
                backend.actor(Evaluator)
                .options(num_cpus=config.eval.num_cpus, max_restarts=-1, **placed)
                .remote(config)
            )
            self.next_evaluation = self.tally.counters.env_steps + config.eval.every_env_steps
        self.duties = self._duties()
        metrics.message(
            f"distrl: {config.algo} on {config.env.id}: {pool.size} rollout worker{'s' if pool.size != 1 else ''} x "
            f"{runtime.envs_per_worker} envs on {pool.num_nodes} node(s), {learner.placed(device)}; "
            f"output in {self.out_dir}"
        )
        for note in model_notes(config.model, spaces[0]):
            metrics.message(f"distrl: note: {note}")

    def _duties(self) -> list[Duty]:
        """The run's duties after each update, in the order they run. The stop rules come
        after the evaluation (a finished round may meet stop.reward) and before the report
        and checkpoint they force; a checkpoint is a snapshot too."""
        config, now = self.config, time.monotonic()
        assert self.pool is not None and self.learner is not None
        learner = self.learner
        table = [
            Duty("evaluation", 0.0 if self.evaluator is not None else math.inf, self._poll_evaluation),
            Duty("stop", 0.0, self._check_stop_rules),
            Duty("rescale", config.runtime.elastic_check_s if self.pool.elastic else math.inf, self._rescale),
            Duty("report", config.output.report_every_s, self._report, also_on=("stop", "evaluated")),
            Duty("checkpoint", config.output.checkpoint_every_s, self._checkpoint_duty, also_on=("stop",)),
            Duty(
                "snapshot",
                config.runtime.learner_snapshot_every_s,
                lambda events: learner.take_snapshot(),
                unless=("checkpointed",),
            ),
        ]
        for duty in table:
            duty.last = now
        return table

    # ---------------------------------------------------------------- the loop

    def _train(self) -> str:
        """Iterate the flow's updates, count each, run the duties; returns the stop rule."""
        assert self.flow is not None and self.pool is not None and self.learner is not None
        self.tally.start_clock()
        for duty in self.duties:
            duty.last = time.monotonic()
        driving = Driving(self.pool, self.learner, self.tally, self._due)
        mark = time.perf_counter()
        # Closed on the way out, however the loop ends (a stop rule, Ctrl-C, an error): the
        # flow's refs to fragments and updates in flight are dropped here, while Ray is up,
        # and not whenever the garbage collector gets to a suspended generator.
        updates = self.flow.updates(driving)
        self.startup.mark("other set-up")
        first = True
        try:
            for update in updates:
                if first and update.report is not None:
                    self.startup.mark("first update: sampling and learning")
                    first = False
                # The driver's own time (runtime/phases.py): blocked on workers and learner, the
                # rest of the flow's step, and the duties below.
                yielded = time.perf_counter()
                if update.report is not None:
                    self.tally.update(update.report, update.sent_steps)
                self.tally.set_waiting(update.waiting_steps)
                events: set[str] = set()
                if update.duties:
                    now = time.monotonic()
                    for duty in self.duties:
                        if duty.due(now, events):
                            event = duty.run(events)
                            duty.last = time.monotonic()
                            if event is not None:
                                events.add(event)
                        elif events.intersection(duty.unless):
                            duty.last = time.monotonic()  # done by another duty (a checkpoint is a snapshot)
                done = time.perf_counter()
                waited, driving.waited = driving.waited, 0.0
                self.tally.driver_time({"wait": waited, "flow": yielded - mark - waited, "duties": done - yielded})
                mark = done
                if "stop" in events:
                    assert self.stop_reason is not None
                    return self.stop_reason
        finally:
            updates.close()
        raise AssertionError("a flow's updates ended without a stop rule")

    def _due(self) -> bool:
        """Will the next round of duties report, checkpoint or stop?"""
        now = time.monotonic()
        timed = any(duty.name in ("report", "checkpoint") and duty.due(now, set()) for duty in self.duties)
        return timed or self.tally.stop_reason(self.evaluation) is not None

    # ---------------------------------------------------------------- the duties

    def _poll_evaluation(self, events: set[str]) -> Optional[str]:
        """Take the evaluation round that finished since the last call, if any (event
        ``evaluated``); ask for the next one when it is due and none is playing (a slow round
        delays the next, rather than queueing rounds of stale weights behind it)."""
        result = None
        if self.evaluation_ref is not None:
            ready, _ = backend.wait([self.evaluation_ref], timeout=0)
            if not ready:
                return None
            ref, self.evaluation_ref = self.evaluation_ref, None
            try:
                result = backend.get(ref)
            except (RayActorError, RayTaskError) as error:
                self._message(
                    f"an evaluation round failed ({str(error).strip().splitlines()[-1][:200]}); "
                    f"training goes on and the next round is asked for as usual"
                )
            if result is not None and result["version"] is None:
                result = None  # nothing was published yet
        env_steps = self.tally.counters.env_steps
        if self.evaluation_ref is None and env_steps >= self.next_evaluation:
            self.evaluation_ref = self.evaluator.evaluate.remote(env_steps, self.parameter_server)
            self.next_evaluation = env_steps + (self.config.eval.every_env_steps or 0)
        if result is None:
            return None
        self.evaluation = result
        return "evaluated"

    def _check_stop_rules(self, events: set[str]) -> Optional[str]:
        """The stop rules (event ``stop``). Raises NonFiniteLoss, after a last report and
        checkpoint, once the learner has skipped ``runtime.max_nonfinite_updates`` updates in
        a row for NaN or Inf losses."""
        if self.tally.nonfinite_in_a_row >= self.tally.max_nonfinite:
            self._report(events)
            error = self.tally.nonfinite_error(str(self._checkpoint()))
            assert error is not None
            raise error
        self.stop_reason = self.tally.stop_reason(self.evaluation)
        if self.stop_reason:
            self.startup.stopping()
        return "stop" if self.stop_reason else None

    def _rescale(self, events: set[str]) -> None:
        assert self.pool is not None
        self.pool.rescale()
        return None

    def _report(self, events: set[str]) -> None:
        assert self.pool is not None and self.learner is not None and self.metrics is not None
        self._check_actors()
        fields: dict[str, Any] = {
            "num_workers": self.pool.size,
            "num_nodes": self.pool.num_nodes,
            "learner_version": self.learner.version,
        }
        if self.evaluator is not None:
            fields.update(self._evaluation_fields())
        # The driver's CPU seconds, every thread of its process (Ray's own included): what routing
        # the fragments costs it (scripts/bench.py --driver-cost).
        fields["driver_cpu_s"] = round(time.process_time(), 3)
        record = self.tally.report({"worker": self.pool.size, "learner": 1, "driver": 1}, **fields)
        self.metrics.write(record)
        self.last_report = record
        if self.on_report is not None:
            self.on_report(record)
        return None

    def _evaluation_fields(self) -> dict[str, Any]:
        """The newest evaluation round, in every report once evaluation is on (NaN before the
        first round finishes): ``eval_env_steps`` is the step count at which its weights were
        taken, which lags the report's ``env_steps`` by the time the round took."""
        found = self.evaluation or {}
        return {
            "eval_return_mean": found.get("return_mean", math.nan),
            "eval_return_std": found.get("return_std", math.nan),
            "eval_episodes": found.get("episodes", 0),
            "eval_env_steps": found.get("env_steps"),
            "eval_version": found.get("version"),
        }

    def _checkpoint_duty(self, events: set[str]) -> Optional[str]:
        """A checkpoint (event ``checkpointed``). One that cannot be written during the run is
        a message, and training goes on; the last one of the run ends it with the message."""
        try:
            self._checkpoint()
        except CheckpointWriteError as error:
            if "stop" in events:
                raise
            self._message(
                f"{error} Training goes on; the next checkpoint is due in {self.config.output.checkpoint_every_s:g} s."
            )
        return "checkpointed"

    def _checkpoint(self) -> Path:
        assert self.learner is not None
        state = self.learner.state()
        self.tally.clock()
        state.update(self.tally.state())
        return checkpoint.save(
            self.out_dir / "checkpoints",
            self.tally.counters.learner_updates,
            state,
            self.config.to_yaml(),
            self.config.output.keep_checkpoints,
        )

    def _incarnations(self) -> dict[str, list[Any]]:
        assert self.flow is not None
        actors = {"parameter_server": [self.parameter_server], **self.flow.restartable_actors()}
        for kind in actors:
            restart_counter(kind)  # a kind without a counter fails at the start, not at its first restart
        return {kind: backend.get([actor.incarnation.remote() for actor in group]) for kind, group in actors.items()}

    def _check_actors(self) -> None:
        """Count the restarts Ray made of the parameter server and the flow's actors since the
        last look (at each report), each kind in its own counter. A parameter server comes
        back empty: the learner publishes its weights to it again. The flow's actors (replay
        shards) come back empty and refill."""
        assert self.learner is not None
        now = self._incarnations()
        for kind, tokens in now.items():
            restarted = [i for i, (old, new) in enumerate(zip(self.incarnations[kind], tokens)) if old != new]
            if not restarted:
                continue
            self.tally.restarted(kind, len(restarted))
            if kind == "parameter_server":
                self.learner.republish()
                self._message(
                    "the parameter server's process died; Ray restarted it and the learner published its weights again"
                )
            else:
                self._message(
                    f"{kind.replace('_', ' ')}(s) {restarted} died; Ray restarted them empty, and they refill "
                    f"from the workers"
                )
        self.incarnations = now

    def _message(self, text: str) -> None:
        if self.metrics is not None:
            self.metrics.message(text)

    # ---------------------------------------------------------------- the run

    def run(self) -> str:
        """Train until a stop rule holds; returns the rule. Raises KeyboardInterrupt on
        Ctrl-C or SIGTERM after writing a checkpoint."""
        self.startup.mark("process launch to run()")  # the interpreter, imports, the config
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        for stale in (out / "checkpoints").glob(".tmp-*"):  # a write cut off by a crash
            shutil.rmtree(stale, ignore_errors=True)
        (out / "config.yaml").write_text(self.config.to_yaml())
        metrics = self.metrics = MetricsWriter(
            out, self.config.output.tensorboard, self.config.output.console, self.config.stop.env_steps, self.config
        )
        runtime = self.config.runtime
        started_ray = False
        # Python lets the main thread alone set handlers; a run driven from another thread
        # (a Tune trial, a user's thread) leaves SIGTERM to whoever owns the process.
        main_thread = threading.current_thread() is threading.main_thread()
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if main_thread else None
        try:
            wanted = (
                runtime.num_cpus_per_learner * runtime.num_learners
                + (0 if runtime.num_workers == "auto" else runtime.num_workers * runtime.num_cpus_per_worker)
                + (self.config.eval.num_cpus if self.config.eval.every_env_steps is not None else 0)
            )
            serial = runtime.mode == "serial"
            backend.use_serial(serial)  # serial: the actors are plain objects in this process
            if not serial:
                started_ray = cluster.connect(runtime.address, wanted, verbose=self.verbose)
                self.startup.mark("ray start")
            self._start(metrics)
            try:
                reason = self._train()
            except KeyboardInterrupt:
                self.startup.stopping()
                path = self._checkpoint()
                metrics.message(f"interrupted; checkpoint written to {path}")
                raise
            metrics.message(f"stopped: {reason}; checkpoint in {checkpoint.latest(out)}")
            if phases.table_text(self.last_report):
                metrics.message(phases.table_text(self.last_report))
            return reason
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous_sigterm)
            self.startup.mark_end("final report and checkpoint")
            metrics.close()
            if self.pool is not None:
                self.pool.close()
            if self.evaluator is not None:
                backend.kill(self.evaluator)  # a round still playing is of no use now
            self.startup.mark_end("closing workers")
            if started_ray:
                cluster.stop_embedded()
                self.startup.mark_end("ray shutdown")
            backend.use_serial(False)
            self.startup.write(out)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
