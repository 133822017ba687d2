#!/usr/bin/env python
"""What the CPU levers buy the learner and the workers' forward pass (issue 31, item 5).

For the Nature network on 84x84 frames and the 2013 network on 44x44, each case runs in a
fresh process (so thread settings and torch.compile's caches do not leak between cases)
and times distrl's own code on real-shaped batches:

  ppo    one PPO update (``algos/ppo.py``'s learn) on CleanRL's Atari batch: 8 copies x 128
         steps, 4 epochs of 4 minibatches; env steps/s = 1,024 / seconds per update
  dqn    DQN gradient steps (``algos/dqn.py``'s learn) on batches of 32 replayed
         transitions; gradient steps/s
  act    a worker's forward pass (``ActorCritic.act``) on 8 copies' observations, one thread;
         env steps/s of inference alone

The levers: bf16 autocast (``torch.autocast("cpu", torch.bfloat16)``), channels-last
memory format (model and input), ``torch.compile`` of the model, and the learner's intra-op
thread count. Each row is a ratio to the fp32 row of the same network and kind, measured in
the same run.

    python scripts/learner_levers.py                 # every case, a Markdown table
    python scripts/learner_levers.py --seconds 5 --nets small

A benchmark, not a test: it asserts nothing. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

NETS = {"small": 44, "nature": 84}
LEVERS = {
    "fp32": {},
    "bf16 autocast": {"bf16": True},
    "channels-last": {"channels_last": True},
    "bf16 + channels-last": {"bf16": True, "channels_last": True},
    "compile": {"compile": True},
    "compile + bf16": {"compile": True, "bf16": True},
    "1 thread": {"threads": 1},
}
KINDS = ("ppo", "dqn", "act")


def build(net: str, algo: str, levers: dict):
    """distrl's model and algorithm for Pong-shaped frames, with the levers applied."""
    import gymnasium as gym
    import numpy as np
    import torch

    from distrl.algos import ALGORITHMS
    from distrl.config import resolve

    config = resolve(
        {
            "algo": algo,
            "env": {"id": "ALE/Pong-v5", "options": {"screen_size": NETS[net]}},
            "model": {"cnn": net},
            "ppo": {"epochs": 4, "num_minibatches": 4, "clip_coef": 0.1},
        }
    )
    from distrl.models import build_model
    from distrl.models.cnn import NatureCNN

    space = gym.spaces.Box(0, 255, (4, NETS[net], NETS[net]), np.uint8)
    spec = ALGORITHMS[algo]
    model = build_model(config.model, space, gym.spaces.Discrete(6), spec.model_head)
    if levers.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
        for cnn in (m for m in model.modules() if isinstance(m, NatureCNN)):
            forward = cnn.forward

            def channels_last_forward(obs, forward=forward):
                return forward(obs.contiguous(memory_format=torch.channels_last) if obs.dim() == 4 else obs)

            cnn.forward = channels_last_forward  # type: ignore[method-assign]
    if levers.get("compile"):
        model.forward = torch.compile(model.forward)  # type: ignore[method-assign]
    algorithm = spec.algorithm_class(config.algo_config, model, None)
    return config, model, algorithm


def ppo_batch(side: int, generator):
    """A PPO batch of CleanRL's Atari shape, [128, 8]: random frames and actions, the
    behaviour policy's log-probabilities and values as a uniform policy would give them."""
    import math

    import torch

    T, B = 128, 8
    return {
        "obs": torch.randint(0, 256, (T, B, 4, side, side), dtype=torch.uint8, generator=generator),
        "actions": torch.randint(0, 6, (T, B), generator=generator),
        "logp": torch.full((T, B), -math.log(6)),
        "values": torch.zeros(T, B),
        "rewards": (torch.rand(T, B, generator=generator) < 0.02).float(),
        "terminated": torch.zeros(T, B, dtype=torch.bool),
        "truncated": torch.zeros(T, B, dtype=torch.bool),
        "episode_start": torch.zeros(T, B, dtype=torch.bool),
        "timeout_value": torch.zeros(T, B),
        "bootstrap_value": torch.zeros(B),
        "bootstrap_obs": torch.randint(0, 256, (B, 4, side, side), dtype=torch.uint8, generator=generator),
    }


def dqn_batch(side: int, generator):
    import torch

    N, n = 32, 3
    frames = lambda: torch.randint(0, 256, (N, 4, side, side), dtype=torch.uint8, generator=generator)  # noqa: E731
    return {
        "obs": frames(),
        "next_obs": frames(),
        "actions": torch.randint(0, 6, (N,), generator=generator),
        "rewards": (torch.rand(N, n, generator=generator) < 0.02).float(),
        "terminated": torch.zeros(N, n, dtype=torch.bool),
        "truncated": torch.zeros(N, n, dtype=torch.bool),
        "cut": torch.zeros(N, dtype=torch.bool),
        "cut_value": torch.zeros(N),
        "weights": torch.ones(N),
    }


def run_case(net: str, kind: str, levers: dict, seconds: float) -> dict:
    """Times one case in this process; returns its rate."""
    import contextlib

    import torch

    from distrl.algos.interface import Progress

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    side = NETS[net]
    threads = 1 if kind == "act" else levers.get("threads", os.cpu_count() or 1)
    torch.set_num_threads(threads)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if levers.get("bf16") else contextlib.nullcontext
    config, model, algorithm = build(net, "dqn" if kind == "dqn" else "ppo", levers)
    if kind == "act":
        obs = torch.randint(0, 256, (8, 4, side, side), dtype=torch.uint8, generator=generator)

        def step() -> int:
            with torch.inference_mode(), autocast():
                model.act(obs)
            return 8
    else:
        batch = (dqn_batch if kind == "dqn" else ppo_batch)(side, generator)
        units = 1 if kind == "dqn" else 128 * 8

        def step() -> int:
            with autocast():
                algorithm.learn(batch, Progress(0))
            return units

    start = time.perf_counter()
    for _ in range(2):  # warm-up; torch.compile compiles here
        step()
    warmup = time.perf_counter() - start
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done == 0:
        done += step()
    return {"rate": done / (time.perf_counter() - start), "warmup_s": warmup, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per case")
    parser.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # NET,KIND,LEVER: one case, JSON out
    args = parser.parse_args()
    if args.case:
        net, kind, lever = args.case.split(",", 2)
        print(json.dumps(run_case(net, kind, LEVERS[lever], args.seconds)), flush=True)
        return

    import torch

    rows = []
    for net in args.nets:
        for kind in args.kinds:
            base = None
            for lever in args.levers:
                if kind == "act" and lever == "1 thread":
                    continue  # a worker runs on one thread anyway
                command = [sys.executable, __file__, "--case", f"{net},{kind},{lever}", "--seconds", str(args.seconds)]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    error = (done.stderr.strip().splitlines() or ["?"])[-1]
                    print(f"{net} {kind} {lever}: failed: {error}", file=sys.stderr, flush=True)
                    rows.append((net, kind, lever, None, None, None))
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                base = result["rate"] if lever == "fp32" else base
                ratio = result["rate"] / base if base else None
                rows.append((net, kind, lever, result["rate"], ratio, result["warmup_s"]))
                print(f"{net} {kind} {lever}: {result['rate']:,.1f}/s", file=sys.stderr, flush=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"{args.seconds:.0f} s per case after 2 warm-up steps"
    )
    print("| network | kind | lever | rate | vs fp32 | warm-up s |")
    print("|---|---|---|---|---|---|")
    units = {"ppo": "env steps/s", "dqn": "gradient steps/s", "act": "env steps/s"}
    for net, kind, lever, rate, ratio, warmup in rows:
        shown = f"{rate:,.1f} {units[kind]}" if rate is not None else "failed"
        print(
            f"| {net} {NETS[net]}x{NETS[net]} | {kind} | {lever} | {shown} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} | {'' if warmup is None else f'{warmup:.1f}'} |"
        )


if __name__ == "__main__":
    main()
