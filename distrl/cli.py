"""Command line: ``distrl train``, ``eval``, ``export``, ``tune``, ``configs``, ``envs``, ``plot``,
``baseline``, ``submit`` and ``jobs``. ``train`` is a thin layer over the Python API (``distrl.api``).

Errors the user can fix print one paragraph and exit non-zero (2 for bad input); they
never print a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Optional

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
    "stop_on": "stop.on",
    "out": "output.dir",
    "address": "runtime.address",
    "mode": "runtime.mode",
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
    train.add_argument(
        "--config", metavar="NAME|FILE", help="a shipped config's name (see `distrl configs`) or a YAML file"
    )
    train.add_argument("--env", metavar="ID", help="environment id, e.g. CartPole-v1 or ALE/Pong-v5")
    train.add_argument("--algo", metavar="NAME", help=f"{', '.join(ALGORITHMS)} (default ppo; see below)")
    train.add_argument("--num-workers", metavar="N", help="rollout workers, or 'auto'")
    train.add_argument("--envs-per-worker", metavar="K", help="environment copies per worker")
    train.add_argument("--seed", metavar="S")
    train.add_argument("--stop-env-steps", metavar="N", help="stop after N environment steps")
    train.add_argument("--stop-reward", metavar="R", help="stop when the mean return of the last 100 episodes >= R")
    train.add_argument("--stop-seconds", metavar="S", help="stop after S seconds of training")
    train.add_argument(
        "--stop-on",
        choices=["train", "eval"],
        help="compare --stop-reward with the training return (default) or the evaluation return "
        "(needs eval.every_env_steps)",
    )
    train.add_argument("--out", metavar="DIR", help="output folder (default runs/ENV-ALGO-TIME)")
    train.add_argument("--address", metavar="ADDR", help="join a Ray cluster: 'auto' or HOST:PORT")
    train.add_argument(
        "--serial",
        action="store_const",
        const="serial",
        dest="mode",
        help="run workers, learner and flow in this one process, without Ray, to debug (runtime.mode=serial)",
    )
    train.add_argument("--resume", metavar="DIR", help="continue from a run folder or checkpoint folder")
    train.add_argument(
        "--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], help="override any config key"
    )
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    train.add_argument(
        "--verbose", action="store_true", help="also show Ray's own start-up notices (always shown with --address)"
    )

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

    tune = sub.add_parser(
        "tune",
        help="sweep hyperparameters on Ray Tune: every trial a whole distrl run",
        description="Each trial is a distrl run of --config with one setting of the --grid keys and one seed, "
        "placed by Tune in a placement group of its own size. Writes OUT/trials.csv, OUT/summary.csv, "
        "OUT/curves.png and OUT/best_config.yaml; the runs are in OUT/trials/.",
    )
    tune.add_argument("--config", metavar="NAME|FILE", help="the base config: a shipped name or a YAML file")
    tune.add_argument(
        "--grid",
        metavar="KEY=V1,V2",
        nargs="+",
        action="extend",
        default=[],
        help="a swept key and its values (with --search random also KEY=loguniform:A:B or uniform:A:B)",
    )
    tune.add_argument("--seeds", type=int, default=1, metavar="N", help="seeds 1..N for every setting (default 1)")
    tune.add_argument("--search", choices=["grid", "random"], default="grid")
    tune.add_argument("--num-samples", type=int, default=1, metavar="N", help="random search: settings drawn")
    tune.add_argument(
        "--metric",
        metavar="NAME",
        help="progress field to rank by (default: eval_return_mean "
        "when eval is on, else episode_return_mean), its last value",
    )
    tune.add_argument(
        "--max-concurrent",
        type=int,
        default=0,
        metavar="N",
        help="trials at once (default: as many as the cluster's CPUs hold)",
    )
    tune.add_argument("--stop-env-steps", metavar="N")
    tune.add_argument("--stop-seconds", metavar="S")
    tune.add_argument("--stop-reward", metavar="R")
    tune.add_argument("--num-workers", metavar="N", help="rollout workers of each trial")
    tune.add_argument("--out", metavar="DIR", help="the sweep's folder (default sweeps/ENV-ALGO-TIME)")
    tune.add_argument("--address", metavar="ADDR", help="run on a Ray cluster: 'auto' or HOST:PORT")
    tune.add_argument(
        "--set", metavar="KEY=VALUE", nargs="+", action="extend", default=[], help="override any base config key"
    )

    export = sub.add_parser(
        "export",
        help="write a checkpoint's greedy policy as a TorchScript or ONNX file",
        description=(
            "Write the greedy policy of a run or checkpoint as one file that runs without distrl: TorchScript "
            "(torch.jit.load) or ONNX (onnxruntime). It maps a batch of observations [N, ...], as the env gives "
            "them, to the greedy actions. FILE.json beside it says what to feed it."
        ),
    )
    export.add_argument("checkpoint", metavar="CHECKPOINT", help="a run folder or a checkpoint folder")
    export.add_argument(
        "--format",
        choices=["torchscript", "onnx"],
        default=None,
        help="the file's format (default: from the suffix of -o: .onnx for onnx, .pt for torchscript)",
    )
    export.add_argument("-o", "--out", required=True, metavar="FILE", help="the file to write, e.g. policy.onnx")

    sub.add_parser("envs", help="list the environment families, their ids and default options")
    sub.add_parser("configs", help="list the ready-made configs that ship with distrl, by the names --config takes")

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
    submit.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="print the job id and return at once (by default, as `ray job submit`, the job's logs follow until "
        "it ends and the exit status is its outcome)",
    )
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
    from distrl import api
    from distrl.config import load_yaml, parse_override, set_dotted

    state = None
    folder = None
    unreadable: list[Path] = []
    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with its own config; drop --config (use --set to change keys).")
        user, state, folder, unreadable = api.resumed(args.resume)
    else:
        user = load_yaml(args.config) if args.config else {}
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            set_dotted(user, key, value)
    for item in args.set:
        key, value = parse_override(item)
        set_dotted(user, key, value)
    return user, state, folder, unreadable


def cmd_train(args: argparse.Namespace) -> int:
    from distrl import api

    user, state, folder, unreadable = _user_config(args)
    if args.print_config:
        config, note = api.prepare(user)
        if note:
            print(f"# {note}")
        sys.stdout.write(config.to_commented_yaml())
        return 0
    try:
        api.run(user, state, folder, unreadable, verbose=args.verbose)
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


def cmd_configs(args: argparse.Namespace) -> int:
    from distrl import shipped

    names = shipped.names()
    width = max(len(name) for name in names)
    for name in names:
        print(f"{name:<{width}}  {shipped.summary(name)}")
    print(f"\n{len(names)} configs in {shipped.ROOT}. Train one with `distrl train --config NAME`;")
    print("`distrl train --config NAME --print-config` shows every key it sets, with the defaults under it.")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from distrl.export import cmd_export as export

    return export(args)


def cmd_tune(args: argparse.Namespace) -> int:
    from distrl import tune
    from distrl.config import load_yaml, parse_override, set_dotted

    if args.seeds < 1 or args.num_samples < 1:
        raise ConfigError("--seeds and --num-samples must be at least 1.")
    if not args.grid:
        raise ConfigError("distrl tune needs at least one --grid KEY=V1,V2 to sweep.")
    user = load_yaml(args.config) if args.config else {}
    for flag, key in (
        ("stop_env_steps", "stop.env_steps"),
        ("stop_seconds", "stop.seconds"),
        ("stop_reward", "stop.reward"),
        ("num_workers", "runtime.num_workers"),
    ):
        if getattr(args, flag) is not None:
            set_dotted(user, key, getattr(args, flag))
    for item in args.set:
        set_dotted(user, *parse_override(item))
    # Trials print nothing of their own: Tune's table is the sweep's console.
    set_dotted(user, "output.console", (user.get("output") or {}).get("console", "off"))
    axes = [tune.parse_axis(item) for item in args.grid]
    if args.out:
        out = Path(args.out)
    else:
        env_id = (user.get("env") or {}).get("id", "CartPole-v1")
        out = Path("sweeps") / f"{env_id.replace('/', '_')}-{user.get('algo', 'ppo')}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = tune.sweep(
        user,
        axes,
        out,
        seeds=list(range(1, args.seeds + 1)),
        search=args.search,
        num_samples=args.num_samples,
        metric=args.metric,
        address=args.address,
        max_concurrent=args.max_concurrent,
    )
    print()
    print(tune.format_table(result))
    out = out.resolve()
    print(f"\ntrials: {out / 'trials.csv'}  (runs in {out / 'trials'})")
    print(f"summary: {out / 'summary.csv'}")
    if result["plot"] is not None:
        print(f"curves: {result['plot']}")
    print(f"best config: {out / 'best_config.yaml'}")
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
        "configs": cmd_configs,
        "tune": cmd_tune,
        "export": cmd_export,
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
