"""Command line: ``distrl train``, ``eval``, ``envs``, ``plot``, ``baseline``, ``submit`` and ``jobs``.

Errors the user can fix print one paragraph and exit non-zero (2 for bad input); they
never print a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from distrl.algos import ALGORITHMS
from distrl.errors import ConfigError, DistrlError

# Flags that are shortcuts for config keys; --set reaches every other key.
TRAIN_FLAGS = {
    "env": "env.id",
    "algo": "algo",
    "num_workers": "runtime.num_workers",
    "envs_per_worker": "runtime.envs_per_worker",
    "seed": "seed",
    "stop_env_steps": "stop.env_steps",
    "stop_reward": "stop.reward",
    "stop_seconds": "stop.seconds",
    "out": "output.dir",
    "address": "runtime.address",
}


def _config_epilog() -> str:
    """Every algorithm and every config key with its default and help text, from the
    registry and the config dataclasses, so a new algorithm shows here by registering."""
    from distrl.config import key_help

    lines = ["algorithms (--algo):"]
    lines += [f"  {name:<10} {spec.paper}" for name, spec in ALGORITHMS.items()]
    lines += ["", "config keys (--set KEY=VALUE, or in a --config YAML file; the algorithm's own section is used):"]
    rows = key_help()
    width = max(len(key) + len(default) for key, default, _ in rows) + 3
    for key, default, text in rows:
        lines.append(f"  {key} = {default}".ljust(width + 4) + f"  {text}")
    lines += ["", "Presets per environment family fill in under your values: see --print-config."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distrl", description="Distributed actor-learner reinforcement learning on Ray."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train an agent (default: PPO on CartPole-v1, embedded local Ray)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_config_epilog(),
    )
    train.add_argument("--config", metavar="FILE", help="YAML config file (see configs/)")
    train.add_argument("--env", metavar="ID", help="environment id, e.g. CartPole-v1 or ALE/Pong-v5")
    train.add_argument("--algo", metavar="NAME", help=f"{', '.join(ALGORITHMS)} (default ppo; see below)")
    train.add_argument("--num-workers", metavar="N", help="rollout workers, or 'auto'")
    train.add_argument("--envs-per-worker", metavar="K", help="environment copies per worker")
    train.add_argument("--seed", metavar="S")
    train.add_argument("--stop-env-steps", metavar="N", help="stop after N environment steps")
    train.add_argument("--stop-reward", metavar="R", help="stop when the mean return of the last 100 episodes >= R")
    train.add_argument("--stop-seconds", metavar="S", help="stop after S seconds of training")
    train.add_argument("--out", metavar="DIR", help="output folder (default runs/ENV-ALGO-TIME)")
    train.add_argument("--address", metavar="ADDR", help="join a Ray cluster: 'auto' or HOST:PORT")
    train.add_argument("--resume", metavar="DIR", help="continue from a run folder or checkpoint folder")
    train.add_argument(
        "--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], help="override any config key"
    )
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    evaluate = sub.add_parser("eval", help="play episodes with a trained policy and print the mean return")
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder or a checkpoint folder")
    evaluate.add_argument("--episodes", type=int, default=10, metavar="N")
    evaluate.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling")
    evaluate.add_argument("--seed", type=int, default=12345, metavar="S")
    evaluate.add_argument(
        "--video",
        metavar="FILE",
        help="also record the episodes, as the game's own colour screen, into one .mp4 (or .gif) file; "
        "needs pip install 'distrl[video]'",
    )
    evaluate.add_argument(
        "--set",
        metavar="env.options.KEY=VALUE",
        nargs="+",
        action="extend",
        default=[],
        help="play with other env options than training had, e.g. env.options.split=test for held-out data",
    )

    sub.add_parser("envs", help="list the environment families, their ids and default options")

    plot = sub.add_parser(
        "plot",
        help="draw runs' learning curves (mean return vs env steps and vs wall clock) into a PNG",
        description="Learning curves from runs' progress.jsonl. Runs whose configs differ only in seed "
        "are drawn as one curve: their mean, with a band from the lowest to the highest run.",
    )
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run output folders (or progress.jsonl files)")
    plot.add_argument("-o", "--out", default="curve.png", metavar="FILE", help="the figure (.png, .svg, .pdf)")
    plot.add_argument("--labels", nargs="+", metavar="LABEL", help="one legend label per curve")
    plot.add_argument("--target", type=float, metavar="R", help="draw this return as a dashed line")
    plot.add_argument("--title", default="", metavar="TEXT")
    plot.add_argument(
        "--baseline",
        nargs="+",
        default=[],
        metavar="NAME=R",
        help="dotted lines for baselines' mean returns, e.g. random=22.5 (see distrl baseline)",
    )

    baseline = sub.add_parser(
        "baseline",
        help="play episodes with a random or heuristic policy: the floor of a learning curve",
    )
    baseline.add_argument("env", metavar="ENV", help="environment id, e.g. distrl/MarketMaking-v0")
    baseline.add_argument(
        "--policy", choices=["random", "heuristic"], default="random", help="heuristic: where one is written"
    )
    baseline.add_argument("--episodes", type=int, default=100, metavar="N")
    baseline.add_argument("--seed", type=int, default=12345, metavar="S")
    baseline.add_argument(
        "--set", metavar="env.options.KEY=VALUE", nargs="+", action="extend", default=[], help="env options"
    )

    submit = sub.add_parser(
        "submit",
        help="send a training run to a Ray cluster as a Ray Job",
        description="Send `distrl train ...` to a cluster as a Ray Job: distrl submit --address "
        "http://HEAD:8265 -- train --env ALE/Pong-v5 --num-workers auto",
    )
    submit.add_argument(
        "--address",
        metavar="URL",
        help="the Jobs API (dashboard), default $RAY_API_SERVER_ADDRESS or http://127.0.0.1:8265",
    )
    submit.add_argument("--working-dir", metavar="DIR", help="folder uploaded for the job (default: the project)")
    submit.add_argument(
        "--py-module",
        action="append",
        default=[],
        metavar="DIR",
        help="a package folder of your own (your env's) uploaded for the job and importable on every node; "
        "repeat for several",
    )
    submit.add_argument("--wait", action="store_true", help="follow the job's logs and exit with its result")
    submit.add_argument("train_args", nargs=argparse.REMAINDER, metavar="-- train ...")

    jobs = sub.add_parser("jobs", help="follow submitted runs: status, logs, stop, list")
    jobs.add_argument("action", choices=["status", "logs", "stop", "list"])
    jobs.add_argument("job_id", nargs="?", metavar="ID")
    jobs.add_argument("--address", metavar="URL")
    jobs.add_argument("--follow", action="store_true", help="logs: keep printing until the job ends")
    return parser


def _user_config(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], Optional[dict[str, Any]], Optional[Path], list[Path]]:
    """The user's layer of config values, plus on --resume the checkpoint's state, its folder,
    and the newer checkpoints of the run that could not be read."""
    from distrl import checkpoint
    from distrl.config import load_yaml, parse_override, set_dotted

    state = None
    folder = None
    skipped: list[tuple[Path, str]] = []
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with its own config; drop --config (use --set to change keys).")
        folder, state, skipped = checkpoint.load_readable(args.resume)
        for path, reason in skipped:
            print(f"distrl: checkpoint {str(path)!r} is unreadable ({reason}); skipped.", flush=True)
        if skipped:
            print(f"distrl: resuming from {str(folder)!r}, the newest checkpoint that loads.", flush=True)
        user = yaml.safe_load(state["config_yaml"]) or {}
        # The output folder is where the checkpoint lies now (or --out), not where the run
        # was first written: run folders may be moved or copied.
        (user.get("output") or {}).pop("dir", None)
    else:
        user = load_yaml(args.config) if args.config else {}
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            set_dotted(user, key, value)
    for item in args.set:
        key, value = parse_override(item)
        set_dotted(user, key, value)
    return user, state, folder, [path for path, _ in skipped]


def _default_stop(config) -> Optional[str]:
    """With no stop rule, stop at the environment's registered reward threshold."""
    stop = config.stop
    if stop.env_steps is not None or stop.reward is not None or stop.seconds is not None:
        return None
    import gymnasium as gym

    spec = gym.registry.get(config.env.id)
    threshold = getattr(spec, "reward_threshold", None) if spec else None
    if threshold is None:
        return "no stop rule set: training runs until Ctrl-C (a checkpoint is written on the way out)"
    stop.reward = float(threshold)
    return f"no stop rule set: stopping at {config.env.id}'s reward threshold, mean return >= {threshold}"


def _check_resume_compatible(config, state: dict[str, Any]) -> None:
    """A resumed run keeps what its weights were trained for."""
    from distrl.config import resolve

    saved = resolve(yaml.safe_load(state["config_yaml"]) or {})
    for name, before, after in (
        ("algo", saved.algo, config.algo),
        ("env.id", saved.env.id, config.env.id),
        ("model", saved.model, config.model),
    ):
        if before != after:
            raise ConfigError(
                f"--resume keeps the run's {name} ({before!r}), but this command asks for {after!r}. "
                f"Start a new run to train a different {name}."
            )


def _output_folder(config, resumed_from: Optional[Path], unreadable: Sequence[Path] = ()) -> Path:
    """Where this run writes. A new run never writes into a folder that holds another run;
    a resumed run continues in its own folder, from its newest readable checkpoint only. The
    unreadable ones newer than it are renamed aside there (``unreadable-ckpt-N``), kept for
    inspection, so that the run can write its own checkpoint N."""
    from distrl import checkpoint

    if config.output.dir:
        out_dir = Path(config.output.dir)
    elif resumed_from is not None and resumed_from.parent.name == "checkpoints":
        out_dir = resumed_from.parent.parent
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_dir = Path("runs") / f"{config.env.id.replace('/', '_')}-{config.algo}-{stamp}"
    damaged = {path.resolve() for path in unreadable}
    readable = [p for p in checkpoint.list_checkpoints(out_dir / "checkpoints") if p.resolve() not in damaged]
    newest = readable[-1] if readable else None
    # A run that stopped before its first report (say, it could not join the cluster) left
    # an empty progress.jsonl; the folder can be used again.
    progress = out_dir / "progress.jsonl"
    holds_run = (progress.is_file() and progress.stat().st_size > 0) or newest is not None
    if resumed_from is None and holds_run:
        raise ConfigError(
            f"{str(out_dir)!r} already holds a run. Continue it with `distrl train --resume {out_dir}`, "
            f"or choose another --out."
        )
    if resumed_from is not None and newest is not None and newest.resolve() != resumed_from.resolve():
        if (
            checkpoint.number_of(newest) > checkpoint.number_of(resumed_from)
            or out_dir.resolve() != resumed_from.parent.parent.resolve()
        ):
            raise ConfigError(
                f"Resuming {str(resumed_from)!r} into {str(out_dir)!r} would write over its newer checkpoints "
                f"(newest: {newest.name}). Resume from {str(newest)!r}, or pass --out NEW_FOLDER to branch off."
            )
    for path in unreadable:
        if path.parent.resolve() == (out_dir / "checkpoints").resolve():
            print(f"distrl: the unreadable {path.name} is kept as {str(checkpoint.set_aside(path))!r}.", flush=True)
    return out_dir


def _check_spaces(config) -> None:
    """Build the env and the model once on the driver, so that an action or observation
    space the algorithm cannot take is refused before Ray starts. Only for the cheap
    gymnasium envs (the user's own included); an emulator's spaces are fixed by its family."""
    from distrl.algos import ALGORITHMS
    from distrl.envs import make_env
    from distrl.models import build_model

    env = make_env(config.env.id, **config.env.options)
    try:
        build_model(config.model, env.observation_space, env.action_space, ALGORITHMS[config.algo].model_head)
    finally:
        env.close()


def cmd_train(args: argparse.Namespace) -> int:
    from distrl.config import resolve

    user, state, folder, unreadable = _user_config(args)
    config = resolve(user)
    from distrl.envs import check_id, custom

    custom.prepare(config.env)
    family = check_id(config.env.id)
    if family.name == "classic":
        _check_spaces(config)
    note = _default_stop(config)
    if args.print_config:
        if note:
            print(f"# {note}")
        sys.stdout.write(config.to_commented_yaml())
        return 0
    if state is not None:
        _check_resume_compatible(config, state)
    out_dir = _output_folder(config, folder, unreadable)
    config.output.dir = str(out_dir)

    from distrl.runtime import cluster

    if cluster.starts_embedded(config.runtime.address):
        cluster.prefer_loopback()  # must happen before Ray is imported (by the trainer below)
    from distrl.runtime.trainer import Trainer

    if note:
        print(f"distrl: {note}", flush=True)
    trainer = Trainer(config, out_dir, resume_state=state)
    try:
        trainer.run()
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from distrl.evaluate import evaluate

    if args.episodes < 1:
        raise DistrlError(f"--episodes must be at least 1, got {args.episodes}.")
    options = env_option_overrides(args.set, "eval")
    returns, folder = evaluate(
        args.checkpoint, args.episodes, greedy=args.greedy, seed=args.seed, video=args.video, env_options=options
    )
    import numpy as np

    print(f"checkpoint: {folder}")
    if options:
        print("env options: " + ", ".join(f"{key}={value!r}" for key, value in options.items()))
    print(f"episodes: {len(returns)}")
    print(f"return mean: {np.mean(returns):.3f}")
    print(f"return std: {np.std(returns):.3f}")
    if args.video:
        print(f"video: {Path(args.video).resolve()}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from distrl.plot import plot

    baselines = {}
    for item in args.baseline:
        name, _, value = item.partition("=")
        try:
            baselines[name] = float(value)
        except ValueError:
            raise ConfigError(f"--baseline takes NAME=RETURN, for example random=22.5; got {item!r}.") from None
    runs = [Path(run) for run in args.runs]
    for line in plot(runs, Path(args.out), args.labels, args.target, args.title, baselines):
        print(line)
    print(f"wrote {args.out}")
    return 0


def env_option_overrides(items: list[str], command: str) -> dict[str, Any]:
    """``--set env.options.KEY=VALUE`` items as a dict of env options: eval and baseline play
    an env and take nothing else (a learning rate would be silently meaningless there)."""
    from distrl.config import parse_override

    options: dict[str, Any] = {}
    for item in items:
        key, value = parse_override(item)
        if not key.startswith("env.options."):
            raise ConfigError(f"distrl {command} takes env options only (--set env.options.KEY=VALUE); got {key!r}.")
        options[key.removeprefix("env.options.")] = value
    return options


def cmd_baseline(args: argparse.Namespace) -> int:
    from distrl.baselines import play
    from distrl.envs import check_id

    if args.episodes < 1:
        raise DistrlError(f"--episodes must be at least 1, got {args.episodes}.")
    options = env_option_overrides(args.set, "baseline")
    from distrl.config import EnvConfig
    from distrl.envs import custom

    custom.prepare(EnvConfig(id=args.env))
    check_id(args.env)
    returns = play(args.env, args.policy, args.episodes, args.seed, options)
    import numpy as np

    print(f"env: {args.env}")
    print(f"policy: {args.policy}")
    print(f"episodes: {len(returns)}")
    print(f"return mean: {np.mean(returns):.3f}")
    print(f"return std: {np.std(returns):.3f}")
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    from distrl.envs import FAMILIES

    def options(defaults: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in defaults.items())

    for family in FAMILIES.values():
        print(f"{family.name}: {family.description}")
        if family.defaults_by_id:
            for env_id, defaults in family.defaults_by_id.items():
                print(f"  {env_id}: {options(defaults)}")
        else:
            print(f"  ids: {', '.join(family.example_ids)}")
            if family.defaults:
                print(f"  options: {options(family.defaults)}")
        if family.install:
            print(f"  install: {family.install}")
    print("\nOptions go in env.options (YAML) or --set env.options.NAME=VALUE; docs/environments.md explains them.")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from distrl.jobs import submit

    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    return submit(args.address, train_args, args.working_dir, args.wait, args.py_module)


def cmd_jobs(args: argparse.Namespace) -> int:
    from distrl.jobs import command

    return command(args.action, args.job_id, args.address, args.follow)


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handlers = {
        "train": cmd_train,
        "eval": cmd_eval,
        "envs": cmd_envs,
        "plot": cmd_plot,
        "baseline": cmd_baseline,
        "submit": cmd_submit,
        "jobs": cmd_jobs,
    }
    try:
        return handlers[args.command](args)
    except DistrlError as error:
        print(f"distrl: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
