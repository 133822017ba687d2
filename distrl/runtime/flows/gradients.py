"""The asynchronous-gradients flow (A3C without threads): each worker samples, computes the
gradient of the loss on its own fragment with its own model copy, and pushes it to the
learner, which applies it at once with the one shared optimizer and replies with the new
weights.

    worker: sample -> gradient -> learner.update((gradient, version)) -> copy the reply's weights -> repeat
    driver: keep one request out per worker; count what comes back

Workers never wait for each other, so their updates interleave in arrival order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Generator, cast

from ray.exceptions import RayActorError, RayTaskError

from distrl.algos.interface import GradientAlgorithm, Progress
from distrl.runtime import backend
from distrl.runtime.failures import LearnerRestarted
from distrl.runtime.flows.base import Driving, Flow, Update
from distrl.runtime.fragment import collate
from distrl.runtime.learner import Learner, LearnerSide, UpdateReport
from distrl.runtime.rollout_worker import Request, RolloutWorker, WorkerTask
from distrl.runtime.weights import set_weights
from distrl.runtime.worker_pool import WORK


@dataclass
class PushGradients:
    """The worker side: the fragment becomes a gradient, and the learner's report of
    applying it rides back to the driver in the summary."""

    learner: Any

    def run(self, worker: RolloutWorker, request: Request) -> dict[str, Any]:
        fragment, summary = worker.rollout(request)
        began = time.perf_counter()
        worker.model.train()
        algorithm = cast("type[GradientAlgorithm]", worker.spec.algorithm_class)  # this flow's kind
        gradients, stats = algorithm.gradients(worker.model, collate([fragment], "cpu"), worker.config.algo_config)
        worker.model.eval()
        pushed = time.perf_counter()
        summary["phases"]["gradient"] = pushed - began
        try:
            report = backend.get(
                self.learner.update.remote((gradients, worker.version), Progress(env_steps=request.env_steps))
            )
            summary["phases"]["learner_wait"] = time.perf_counter() - pushed
        except (RayActorError, RayTaskError) as error:
            if isinstance(error, RayTaskError) and not isinstance(error.cause, LearnerRestarted):
                raise
            # The learner died, or Ray restarted it and the driver has not restored it yet:
            # this gradient is lost; the driver restores the learner and counts the steps.
            summary["update"] = None
            return summary
        if report.weights is not None:  # the newest version, with every gradient applied so far
            set_weights(worker.model, report.weights)
            worker.version = report.version
            report.weights = None  # the driver needs the counts, not the weights
        report.stats = {**stats, **report.stats}
        report.consumed_steps = summary["env_steps"]
        summary["update"] = report
        return summary


class ApplyGradients:
    """The learner side: one worker's gradients, applied at once. The lag is how many other
    updates landed since that worker pulled its weights.

    Each version goes back to the worker that pushed the gradient, in the reply, as the
    paper's workers copy the shared parameters after each update; nobody else needs it. The
    learner applies every gradient, one at a time, and is the flow's bottleneck: a broadcast
    through the parameter server after every gradient (a put, a call, and the worker's pull)
    cost 28% of A3C's CartPole throughput."""

    broadcast = False

    def update(self, learner: Learner, inputs: tuple[list, int], progress: Progress) -> UpdateReport:
        gradients, based_on_version = inputs
        start = time.perf_counter()
        update = learner.algorithm.apply_gradients(gradients, progress)
        return UpdateReport(
            stats=update.stats,
            policy_lag=float(learner.version - based_on_version),
            phases={"update": time.perf_counter() - start},
        )


class GradientFlow(Flow):
    def learner_side(self) -> LearnerSide:
        return ApplyGradients()

    def worker_task(self, learner: Any) -> WorkerTask:
        return PushGradients(learner)

    def updates(self, driving: Driving) -> Generator[Update, None, None]:
        pool, learner = driving.pool, driving.learner
        while True:
            pool.top_up(1, WORK, learner.latest_weights)
            _, summary, _ = pool.receive(driving.wait(pool.pending()))
            if summary is None:
                continue
            if summary["update"] is None:  # the learner died before it applied this gradient
                learner.lost_with_learner(summary["env_steps"])
                continue
            learner.seen(summary["update"])
            yield Update(summary["update"])
