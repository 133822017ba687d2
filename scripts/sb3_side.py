#!/usr/bin/env python
"""Stable-Baselines3's side of ``scripts/bench.py --vs-sb3``: PPO on CartPole-v1 until the
mean return of the last 100 episodes reaches 475, in this one process, as an SB3 user runs
it. bench.py times the whole process from launch to exit and reads one line on stdout:

    python scripts/sb3_side.py --settings zoo --seed 1
    RESULT {"reached": true, "env_steps": 65536, "train_s": 14.2, "import_s": 2.1}

``--settings``:
- ``zoo``: RL Baselines3 Zoo's tuned CartPole-v1 hyperparameters (hyperparams/ppo.yml): 8
  envs, 32 steps each, 20 epochs over each 256-step batch as one minibatch, gamma 0.98,
  GAE 0.8, no entropy bonus, lr 1e-3 and clip 0.2 annealed linearly to 0 over the zoo's
  budget of 100,000 steps, which is also where the run ends.
- ``distrl``: the same, with the schedules annealed over 150,000 steps and that budget:
  distrl's PPO "vector" preset (distrl/algos/ppo.py), i.e. the hyperparameters of distrl's
  default run (8 copies of 32 steps; SB3's defaults for the rest: value coefficient 0.5,
  gradient norm 0.5, no value-loss clipping, two separate 64-64 tanh networks, Adam eps
  1e-5 as distrl's). What SB3 has no setting for: distrl's worker samples the next batch
  while the learner updates, so each batch comes from the previous version of the policy.

The check runs after each rollout (every 256 env steps), as distrl's stop rule runs after
each update. Torch's threads are SB3's default (torch's own), as a user gets them.
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

SETTINGS = {"zoo": 100_000, "distrl": 150_000}  # the schedules' horizon and the budget


class StopAt(BaseCallback):
    """Stop training once the last 100 finished episodes average ``target`` or more."""

    def __init__(self, target: float):
        super().__init__()
        self.target = target
        self.reached = False

    def _on_step(self) -> bool:
        return not self.reached  # False ends SB3's collect loop, and with it learn()

    def _on_rollout_end(self) -> None:
        episodes = self.model.ep_info_buffer  # the last 100 finished episodes (Monitor's)
        if episodes and np.mean([episode["r"] for episode in episodes]) >= self.target:
            self.reached = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="zoo")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", type=float, default=475.0)
    args = parser.parse_args()
    horizon = SETTINGS[args.settings]
    imported = time.perf_counter()

    env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gamma=0.98,
        gae_lambda=0.8,
        ent_coef=0.0,
        learning_rate=lambda remaining: 1e-3 * remaining,
        clip_range=lambda remaining: 0.2 * remaining,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    stop = StopAt(args.target)
    began = time.perf_counter()
    model.learn(total_timesteps=horizon, callback=stop)
    trained = time.perf_counter()
    env.close()
    print(
        "RESULT "
        + json.dumps(
            {
                "reached": stop.reached,
                "env_steps": int(model.num_timesteps),
                "import_s": round(imported - START, 2),
                "setup_s": round(began - imported, 2),
                "train_s": round(trained - began, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
