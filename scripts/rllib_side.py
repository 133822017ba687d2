#!/usr/bin/env python
"""RLlib's side of ``scripts/bench.py --vs-rllib``: the same cases, run by RLlib 2.x (new API
stack: EnvRunners, RLModule, Learner) at the settings distrl's side uses.

Run by bench.py in a process of its own (so that each side starts its own Ray and the
CartPole case times the whole process), and printing one JSON line on stdout:

    python scripts/rllib_side.py cartpole_time_to_475 --seed 1
    python scripts/rllib_side.py pong_ppo_steps_per_s --seconds 120 --warmup-s 30
    python scripts/rllib_side.py pong_sampling_steps_per_s --seconds 30

Identical settings means: the same environment and preprocessing (``distrl.make_env``, so
the same wrappers, frame skip, 84x84 stacks, sticky actions), the same network (distrl's
own MLP or Nature CNN, wrapped as an RLModule, with the same initialisation), and the same
PPO hyperparameters, batch shape and number of env copies. What cannot be made the same
is listed in BENCHMARKS.md next to the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import deque
from typing import Any, Optional

os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import gymnasium as gym  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402
from ray.rllib.core.columns import Columns  # noqa: E402
from ray.rllib.core.rl_module.apis import ValueFunctionAPI  # noqa: E402
from ray.rllib.core.rl_module.rl_module import RLModuleSpec  # noqa: E402
from ray.rllib.core.rl_module.torch import TorchRLModule  # noqa: E402
from ray.tune.registry import register_env  # noqa: E402

# The CartPole case: distrl's PPO "vector" preset (distrl/algos/ppo.py), 2 workers.
CARTPOLE = {
    "num_workers": 2,
    "envs_per_worker": 4,
    "fragment_length": 32,
    "epochs": 20,
    "num_minibatches": 1,
    "lr": 1e-3,
    "anneal_env_steps": 150_000,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "clip": 0.2,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "hidden": [64, 64],
}
# The Pong cases: CleanRL's ppo_atari.py shape (the PPO paper's Atari settings).
PONG = {
    "env_id": "ALE/Pong-v5",
    "num_workers": 1,
    "envs_per_worker": 8,
    "fragment_length": 128,
    "epochs": 4,
    "minibatch_size": 256,
    "lr": 2.5e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip": 0.1,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}


class DistrlModule(TorchRLModule, ValueFunctionAPI):
    """distrl's actor-critic network (``distrl.models.build_model``) as an RLModule, so that
    both sides train the same network with the same initialisation and input scaling."""

    def setup(self):
        from distrl.config import resolve
        from distrl.models import build_model

        model_config = resolve({"env": {"id": self.model_config["env_id"]}}).model
        for key, value in self.model_config.get("overrides", {}).items():
            setattr(model_config, key, value)
        self.net = build_model(model_config, self.observation_space, self.action_space)

    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        logits, _ = self.net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits}

    def _forward_train(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        logits, values = self.net(batch[Columns.OBS])
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: values}

    def compute_values(self, batch: dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        if embeddings is not None:  # the values _forward_train already computed
            return embeddings
        return self.net(batch[Columns.OBS])[1]


def make_distrl_env(config: dict) -> gym.Env:
    from distrl.envs import make_env

    return make_env(config["env_id"], seed=config.get("seed"))


def ppo_config(settings: dict, env_id: str, seed: int, model_overrides: Optional[dict] = None) -> PPOConfig:
    batch = settings["num_workers"] * settings["envs_per_worker"] * settings["fragment_length"]
    minibatch = settings.get("minibatch_size") or batch // settings["num_minibatches"]
    lr: Any = settings["lr"]
    if settings.get("anneal_env_steps"):
        lr = [[0, settings["lr"]], [settings["anneal_env_steps"], 0.0]]
    register_env("distrl_env", make_distrl_env)
    config = (
        PPOConfig()
        .environment("distrl_env", env_config={"env_id": env_id, "seed": seed})
        .env_runners(
            num_env_runners=settings["num_workers"],
            num_envs_per_env_runner=settings["envs_per_worker"],
            rollout_fragment_length=settings["fragment_length"],
        )
        .training(
            train_batch_size_per_learner=batch,
            minibatch_size=minibatch,
            num_epochs=settings["epochs"],
            lr=lr,
            gamma=settings["gamma"],
            lambda_=settings["gae_lambda"],
            clip_param=settings["clip"],
            entropy_coeff=settings["ent_coef"],
            vf_loss_coeff=settings["vf_coef"],
            grad_clip=settings["max_grad_norm"],
            grad_clip_by="global_norm",
            use_kl_loss=False,
            kl_coeff=0.0,
        )
        .rl_module(
            rl_module_spec=RLModuleSpec(
                module_class=DistrlModule,
                model_config={"env_id": env_id, "overrides": model_overrides or {}},
            )
        )
        .reporting(metrics_num_episodes_for_smoothing=100)
        .callbacks(on_episode_end=log_episode_return)
        .debugging(seed=seed, log_level="ERROR")
    )
    if torch.cuda.is_available():
        # distrl's learner takes the GPU when there is one (runtime.num_gpus_per_learner: auto);
        # RLlib's local learner does only when asked.
        config = config.learners(num_learners=0, num_gpus_per_learner=1)
    return config


def log_episode_return(episode, metrics_logger, **kwargs) -> None:
    """Every finished episode's return, unreduced: RLlib's own ``episode_return_mean`` merges
    per-runner windows (it reached 475 at 27k CartPole steps, before 100 episodes of 475 could
    have been played), so the driver keeps its own window of the last 100, as distrl does."""
    # The episode object may be the last chunk of a longer episode; the env's own EpisodeStats
    # wrapper (the same as on distrl's side) reports the whole game's return.
    info = episode.get_infos(-1)
    if "episode_return" in info:
        metrics_logger.log_value("distrl_episode_returns", info["episode_return"], reduce="item_series")


def new_returns(result: dict) -> list[float]:
    value = result.get("env_runners", {}).get("distrl_episode_returns", [])
    return [float(item) for item in (value if isinstance(value, (list, tuple)) else [value])]


def cartpole_time_to_475(seed: int, max_env_steps: int) -> dict:
    """Whole process: from this process's start (bench.py times the subprocess) to the stop rule."""
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    algo = ppo_config(
        CARTPOLE, "CartPole-v1", seed, {"hidden_sizes": CARTPOLE["hidden"], "activation": "tanh"}
    ).build_algo()
    steps, best = 0, float("-inf")
    window: deque[float] = deque(maxlen=100)
    while steps < max_env_steps:
        result = algo.train()
        steps = int(result["num_env_steps_sampled_lifetime"])
        window.extend(new_returns(result))
        if len(window) == window.maxlen:
            best = max(best, sum(window) / len(window))
        if best >= 475:
            break
    algo.stop()
    ray.shutdown()
    return {"env_steps": steps, "reached": best >= 475, "best_return_mean": best}


def pong_ppo_steps_per_s(seconds: float, warmup_s: float) -> dict:
    """Steady state: env steps per second over the iterations after ``warmup_s``."""
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    algo = ppo_config(PONG, PONG["env_id"], seed=1).build_algo()
    start = time.perf_counter()
    measured_steps, measured_from, last = 0, None, None
    while True:
        result = algo.train()
        now = time.perf_counter()
        steps = int(result["num_env_steps_sampled_lifetime"])
        if measured_from is None and now - start >= warmup_s:
            measured_from, last = now, steps
        elif measured_from is not None:
            measured_steps = steps - last
            if now - measured_from >= seconds:
                break
    rate = measured_steps / (now - measured_from)
    algo.stop()
    ray.shutdown()
    return {"steps_per_s": rate, "measured_s": now - measured_from}


def pong_sampling_steps_per_s(seconds: float, num_workers: int, envs_per_worker: int) -> dict:
    """Sampling only: every EnvRunner samples in parallel, nothing is trained."""
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    settings = dict(PONG, num_workers=num_workers, envs_per_worker=envs_per_worker)
    algo = ppo_config(settings, PONG["env_id"], seed=1).build_algo()
    group = algo.env_runner_group

    def sample(runner) -> int:
        return sum(len(episode) for episode in runner.sample())

    group.foreach_env_runner(sample, local_env_runner=False)  # warm-up
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += sum(group.foreach_env_runner(sample, local_env_runner=False))
    rate = steps / (time.perf_counter() - start)
    algo.stop()
    ray.shutdown()
    return {"steps_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["cartpole_time_to_475", "pong_ppo_steps_per_s", "pong_sampling_steps_per_s"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--max-env-steps", type=int, default=300_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--envs-per-worker", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.case == "cartpole_time_to_475":
        out = cartpole_time_to_475(args.seed, args.max_env_steps)
    elif args.case == "pong_ppo_steps_per_s":
        out = pong_ppo_steps_per_s(args.seconds, args.warmup_s)
    else:
        out = pong_sampling_steps_per_s(args.seconds, args.workers, args.envs_per_worker)
    print("RESULT " + json.dumps(out), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
