#!/usr/bin/env python
"""Reproduce a row of docs/results.md: train its configs over several seeds, judge each run
the way the row says, and draw the row's curves.

    python scripts/reproduce.py S8                  # NChain: tabular Q and DQN, seeds 1-3
    python scripts/reproduce.py S2 S9 --seeds 1 2 3 --runs runs/reproduce --figures docs/img/results
    python scripts/reproduce.py S10                 # Atari on two cores: four rows, an hour a run

Each run goes to RUNS/ROW/CONFIG-seedS; a folder that already holds a finished run is judged
again without training, so an interrupted reproduction continues where it stopped. The
summary printed per config is what docs/results.md records, and the figure is
FIGURES/ROW.png (``distrl plot``: one curve per config, the mean over seeds and the band
from the lowest to the highest).

How runs are judged (``Judge``):
- exact: the greedy policy's expected score, by dynamic programming over the env's known
  transitions (NChain, FrozenLake: distrl/envs/exact.py), next to the optimum's;
- eval: the mean score of greedy episodes played with the final checkpoint (``distrl eval``),
  on other env options where the row says so (MarketMaking's held-out test split), next to
  the heuristic policy's score on the same options where the row compares with it;
- train: the last and the best 100-episode mean the run reported, and the env steps at
  which the mean first reached the row's target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Judge:
    kind: str  # "exact", "eval" or "train"
    target: Optional[float] = None  # the row's bar, in the judged quantity
    episodes: int = 100  # greedy episodes, for "eval"
    # "eval" on Catch reports the catch rate: (mean return + 1) / 2.
    catch_rate: bool = False
    greedy: bool = True  # "eval": the most likely action, or sampled ones
    # "eval": env options played instead of the run's (``distrl eval --set env.options.K=V``)
    options: dict[str, Any] = field(default_factory=dict)
    versus: Optional[str] = None  # "eval": also play this baseline policy on the same options


@dataclass(frozen=True)
class Row:
    system: str
    configs: tuple[str, ...]
    judge: Judge
    tutorials: str  # the tutorials' own figure, for the table
    target_line: Optional[float] = None  # dashed line on the figure (in training return)
    env_id: str = ""  # the env the baselines play (the first config's)
    heuristic: bool = False  # a heuristic policy exists for env_id
    seeds: tuple[int, ...] = (1, 2, 3)  # unless --seeds is given; long runs use one


ROWS: dict[str, Row] = {
    "S1": Row(
        "CartPole-v1: policy gradient, PPO, A2C, Q-learning on a discretized state",
        (
            "configs/pg_cartpole.yaml",
            "configs/ppo_cartpole.yaml",
            "configs/a2c_cartpole.yaml",
            "configs/qlearning_cartpole.yaml",
        ),
        Judge("train", target=475.0),
        "random ~20; policy gradient solves it",
        target_line=475.0,
        env_id="CartPole-v1",
    ),
    "S2": Row(
        "FrozenLake-v1 4x4 and 8x8, slippery, tabular Q-learning",
        ("configs/qlearning_frozenlake.yaml", "configs/tutorials/frozenlake8x8_qlearning.yaml"),
        Judge("exact"),
        "wins 2-3 of 10 test games (4x4)",
        env_id="FrozenLake-v1",
    ),
    "S3": Row(
        "Doom basic (VizdoomBasic-v1, 3 actions, 84x84x4 frames), PPO and DQN",
        ("configs/tutorials/doom_basic_ppo.yaml", "configs/tutorials/doom_basic_dqn.yaml"),
        Judge("train", target=75.0),
        "learns to shoot the monster",
        target_line=75.0,
        env_id="VizdoomBasic-v1",
    ),
    "S3-defend": Row(
        "Doom defend the center (VizdoomDefendCenter-v1), PPO",
        ("configs/tutorials/doom_defend_center_ppo.yaml",),
        Judge("train"),
        "(not in the tutorials)",
        env_id="VizdoomDefendCenter-v1",
        seeds=(1,),
    ),
    "S3-health": Row(
        "Doom health gathering (VizdoomHealthGathering-v1), PPO",
        ("configs/tutorials/doom_health_gathering_ppo.yaml",),
        Judge("train"),
        "(not in the tutorials)",
        env_id="VizdoomHealthGathering-v1",
        seeds=(1,),
    ),
    "S4": Row(
        "Market making (hold/buy/sell on bid/ask quotes), PPO, judged on the held-out test split",
        ("configs/tutorials/marketmaking_ppo.yaml", "configs/tutorials/marketmaking_csv_ppo.yaml"),
        Judge("eval", options={"split": "test"}, versus="heuristic"),
        "random 30,890 vs heuristic 62,777 profit on a wavy synthetic signal",
        env_id="distrl/MarketMaking-v0",
        heuristic=True,
    ),
    "S6": Row(
        "Airstriker (Genesis, ships with stable-retro), A3C: the stand-in for Sonic",
        ("configs/tutorials/airstriker_a3c.yaml",),
        Judge("eval", greedy=False),
        "Sonic: trains across zones",
        env_id="retro/Airstriker-Genesis-v0",
        seeds=(1,),
    ),
    "S7": Row(
        "MountainCar-v0, DQN",
        ("configs/tutorials/mountaincar_dqn.yaml",),
        Judge("train", target=-110.0),
        "-136.75 mean at 120k steps; -110 called great",
        target_line=-110.0,
        env_id="MountainCar-v0",
    ),
    "S8": Row(
        "NChain (5 states, slip 0.2), Q-table and Q-network",
        ("configs/tutorials/nchain_qlearning.yaml", "configs/tutorials/nchain_dqn.yaml"),
        Judge("exact"),
        "learns to walk to the end",
        env_id="distrl/NChain-v0",
    ),
    "S9": Row(
        "Catch (10x10 pixels), conv DQN",
        ("configs/tutorials/catch_dqn.yaml",),
        Judge("eval", target=0.95, catch_rate=True),
        "catches the ball",
        target_line=1.0,
        env_id="distrl/Catch-v0",
    ),
    # S10: Atari on two CPU cores, 44x44 frames, the 2013 network, an hour a run (issue 31).
    "S10-breakout-dqn": Row(
        "Atari DQN on two CPU cores: Breakout (ALE/Breakout-v5, 44x44 max-pooled frames, the 2013 network), 60 minutes",
        ("configs/tutorials/breakout_dqn.yaml",),
        Judge("train", target=10.0),
        "Nature DQN: human level after 50M frames on a GPU",
        target_line=10.0,
        env_id="ALE/Breakout-v5",
        seeds=(1,),
    ),
    "S10-pong-dqn": Row(
        "Atari DQN on two CPU cores: Pong (ALE/Pong-v5, 44x44 max-pooled frames, the 2013 network), 60 minutes",
        ("configs/tutorials/pong_dqn.yaml",),
        Judge("train", target=18.0),
        "Nature DQN: Pong learned on a GPU",
        target_line=18.0,
        env_id="ALE/Pong-v5",
        seeds=(1,),
    ),
    "S10-pong": Row(
        "Atari PPO on two CPU cores: Pong (configs/pong_cpu.yaml), 60 minutes",
        ("configs/pong_cpu.yaml",),
        Judge("train", target=18.0),
        "CleanRL's PPO: 20.4 after 10M env steps",
        target_line=18.0,
        env_id="ALE/Pong-v5",
        seeds=(1, 2),
    ),
    "S10-breakout": Row(
        "Atari PPO on two CPU cores: Breakout (configs/breakout_cpu.yaml), 60 minutes",
        ("configs/breakout_cpu.yaml",),
        Judge("train", target=100.0),
        "CleanRL's PPO: about 415 after 10M env steps",
        target_line=100.0,
        env_id="ALE/Breakout-v5",
        seeds=(1,),
    ),
}

# A name that stands for several rows: their runs are an hour each, so each is its own row
# (and figure), and ``S10`` runs them all.
GROUPS: dict[str, tuple[str, ...]] = {"S10": ("S10-pong", "S10-breakout", "S10-breakout-dqn", "S10-pong-dqn")}


def train(config: str, seed: int, out: Path) -> float:
    """Trains one run unless ``out`` already holds a finished one; returns its seconds."""
    if finished(out):
        print(f"  {out}: already trained, judging it again", flush=True)
        return float("nan")
    if out.exists():  # an interrupted run: its partial curve would be judged as the result
        import shutil

        print(f"  {out}: did not finish, training it again", flush=True)
        shutil.rmtree(out)
    command = [sys.executable, "-m", "distrl", "train", "--config", str(ROOT / config), "--seed", str(seed)]
    # Reports every second: short runs would otherwise leave a curve of two or three points.
    command += [
        "--out",
        str(out),
        "--set",
        "output.console=lines",
        "output.tensorboard=false",
        "output.report_every_s=1",
    ]
    print(f"  distrl train --config {config} --seed {seed} --out {out}", flush=True)
    start = time.perf_counter()
    # From the repository root: configs name their data files relative to it.
    result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"reproduce: {config} seed {seed} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def finished(out: Path) -> bool:
    """A run that met one of its stop rules; an interrupted one is trained again from scratch."""
    if not (out / "progress.jsonl").is_file() or not (out / "checkpoints").is_dir():
        return False
    import yaml

    stop = (yaml.safe_load((out / "config.yaml").read_text()) or {}).get("stop") or {}
    last = reports(out)[-1]
    mean = last.get("episode_return_mean")
    return bool(
        (stop.get("env_steps") and last["env_steps"] >= stop["env_steps"])
        or (stop.get("reward") is not None and mean is not None and mean >= stop["reward"])
        or (stop.get("seconds") and last["time_s"] >= stop["seconds"])
    )


def reports(out: Path) -> list[dict]:
    lines = (out / "progress.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def judge_exact(out: Path) -> dict:
    from distrl.evaluate import exact_scores

    return exact_scores(out)


def judge_eval(out: Path, judge: Judge) -> dict:
    from distrl.evaluate import evaluate

    returns, _ = evaluate(out, judge.episodes, greedy=judge.greedy, env_options=judge.options)
    mean = float(np.mean(returns))
    how = "greedy" if judge.greedy else "sampled"
    result = {f"{how}_mean": mean, f"{how}_std": float(np.std(returns))}
    if judge.catch_rate:
        result["catch_rate"] = (mean + 1) / 2
    if judge.versus:
        from distrl.baselines import play

        config = run_config(out)
        baseline = play(config.env.id, judge.versus, judge.episodes, 12345, {**config.env.options, **judge.options})
        result[f"{judge.versus}_mean"] = float(np.mean(baseline))
        result[f"ratio_to_{judge.versus}"] = mean / float(np.mean(baseline))
    return result


def run_config(out: Path) -> Any:
    import yaml

    from distrl.config import resolve

    return resolve(yaml.safe_load((out / "config.yaml").read_text()) or {})


def judge_train(out: Path, judge: Judge) -> dict:
    seen = [r for r in reports(out) if r.get("episode_return_mean") is not None]
    means = [r["episode_return_mean"] for r in seen]
    reached = next(
        (r["env_steps"] for r in seen if judge.target is not None and r["episode_return_mean"] >= judge.target), None
    )
    return {"last_mean": means[-1], "best_mean": max(means), "steps_to_target": reached}


def summary(judged: list[dict]) -> str:
    """Each judged number over the seeds: the mean, and the range where there are several."""
    parts = []
    for key, value in judged[0].items():
        if key == "seed" or not isinstance(value, (int, float)):
            continue
        values = [j[key] for j in judged if isinstance(j[key], (int, float)) and not np.isnan(j[key])]
        if not values:
            continue
        text = f"{key} {np.mean(values):.4g}"
        if len(values) > 1:
            text += f" ({min(values):.4g} to {max(values):.4g})"
        if len(values) < len(judged):
            text += f" [{len(judged) - len(values)} of {len(judged)} runs: none]"
        parts.append(text)
    return ", ".join(parts)


def judge(out: Path, how: Judge) -> dict:
    if how.kind == "exact":
        return judge_exact(out)
    if how.kind == "eval":
        return judge_eval(out, how)
    return judge_train(out, how)


def floors(row: Row, table: list[dict], runs: list[Path]) -> dict[str, float]:
    """The random (and heuristic) policy's mean return over 100 episodes, the curve's floor,
    on the env options the runs trained with (one line per config where those differ, as
    MarketMaking's two data streams do); and where the row is judged exactly, the optimum,
    its ceiling (per episode; FrozenLake's is a success rate, the same number as its mean
    return)."""
    from distrl.baselines import play

    policies = ["random"] + (["heuristic"] if row.heuristic else [])
    options_by_config: dict[str, dict] = {}
    for config, out in zip(row.configs, runs[:: max(len(runs) // len(row.configs), 1)]):
        options_by_config[Path(config).stem] = dict(run_config(out).env.options)
    distinct = {json.dumps(options, sort_keys=True) for options in options_by_config.values()}
    lines = {}
    for stem, options in options_by_config.items():
        for policy in policies:
            name = policy if len(distinct) == 1 else f"{policy} ({stem})"
            if name not in lines:
                lines[name] = float(np.mean(play(row.env_id, policy, 100, 12345, options)))
    optima = {judged["config"]: judged["optimum"] for judged in table if "optimum" in judged}
    for config, optimum in optima.items():
        name = "optimal" if len(set(optima.values())) == 1 else f"optimal ({Path(config).stem})"
        lines[name] = optimum
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    choices = sorted([*ROWS, *GROUPS])
    parser.add_argument("rows", nargs="+", choices=choices, metavar="ROW", help=f"one of {', '.join(choices)}")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the row's (1 2 3; one seed for long runs)")
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="where the runs go")
    parser.add_argument("--figures", type=Path, default=Path("docs/img/results"), help="where the PNGs go")
    args = parser.parse_args()
    args.runs = args.runs.resolve()  # training runs from the repository root

    from distrl.plot import plot

    names = [row for name in args.rows for row in GROUPS.get(name, (name,))]
    for name in dict.fromkeys(names):
        row = ROWS[name]
        print(f"{name}: {row.system}", flush=True)
        table = []
        seeds = args.seeds or list(row.seeds)
        for config in row.configs:
            for seed in seeds:
                out = args.runs / name / f"{Path(config).stem}-seed{seed}"
                seconds = train(config, seed, out)
                judged = judge(out, row.judge)
                last = reports(out)[-1]
                judged.update(
                    config=config,
                    seed=seed,
                    env_steps=last["env_steps"],
                    run_s=round(last["time_s"], 1),
                    wall_s=round(seconds, 1),
                )
                print("  " + json.dumps(judged), flush=True)
                table.append(judged)
        for config in row.configs:
            print(f"  {config}: {summary([judged for judged in table if judged['config'] == config])}")
        figure = args.figures / f"{name.lower()}.png"
        labels_by_config = [Path(config).stem for config in row.configs]
        runs = [args.runs / name / f"{Path(config).stem}-seed{seed}" for config in row.configs for seed in seeds]
        baselines = floors(row, table, runs)
        for policy, value in baselines.items():
            how = (
                "exact"
                if policy.startswith("optimal")
                else f"distrl baseline {row.env_id} --policy {policy.split()[0]} --episodes 100 (the run's env options)"
            )
            print(f"  {policy} policy: {value:.4g} ({how})")
        title = f"{name}: {row.system}"
        for line in plot(
            runs, figure, labels=labels_by_config, target=row.target_line, title=title, baselines=baselines
        ):
            print(f"  {line}")
        print(f"  figure: {figure}")
        print(f"  tutorials: {row.tutorials}")


if __name__ == "__main__":
    main()
