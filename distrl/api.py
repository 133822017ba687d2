"""Training from Python: ``distrl.train``. The command line (``distrl train``) is a thin layer
over the same steps, so a run started either way resolves the same config, writes the same
folder and stops by the same rules.

    import distrl
    result = distrl.train("ppo_cartpole", stop={"env_steps": 50_000}, seed=1)
    result.metrics["episode_return_mean"], result.checkpoint

A config is a shipped config's name (``distrl configs``), a YAML file, or a dict of the same
tree as the YAML; keyword overrides go on top, as nested dicts (``ppo={"lr": 1e-3}``) or as
dotted keys (``**{"ppo.lr": 1e-3}``), exactly like ``--set``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import yaml

from distrl.config import Config
from distrl.errors import ConfigError

ConfigSource = Union[None, str, Path, Mapping[str, Any], Config]


@dataclass
class Result:
    """What a finished run left: where it wrote, how it ended, the last progress report (the
    last line of ``progress.jsonl``, with ``eval_return_mean`` when evaluation was on) and its
    newest checkpoint, which ``distrl.Policy.load`` and ``distrl eval`` take."""

    run_dir: Path
    checkpoint: Optional[Path]
    metrics: dict[str, Any]
    stop_reason: str
    config: Config

    def progress(self) -> list[dict[str, Any]]:
        """Every report of the run, oldest first (``progress.jsonl``)."""
        path = self.run_dir / "progress.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def user_layer(config: ConfigSource, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The user's layer of config values (the YAML's, then the overrides), as ``--config``
    and ``--set`` would build it."""
    from distrl.config import deep_merge, load_yaml, set_dotted

    if config is None:
        user: dict[str, Any] = {}
    elif isinstance(config, Config):
        user = config.to_dict()
    elif isinstance(config, Mapping):
        user = yaml.safe_load(yaml.safe_dump(dict(config)))  # a deep copy the caller cannot see change
    elif isinstance(config, (str, Path)):
        user = load_yaml(config)
    else:
        raise ConfigError(
            f"distrl.train takes a config name, a YAML path, a dict or a Config; got {type(config).__name__}."
        )
    for key, value in overrides.items():
        if "." in key:
            set_dotted(user, key, value)
        elif isinstance(value, Mapping) and isinstance(user.get(key), Mapping):
            user[key] = deep_merge(dict(user[key]), dict(value))
        else:
            user[key] = value
    return user


def train(
    config: ConfigSource = None,
    /,
    *,
    resume: Optional[Union[str, Path]] = None,
    on_report: Optional[Callable[[dict[str, Any]], None]] = None,
    verbose: bool = False,
    **overrides: Any,
) -> Result:
    """Train until a stop rule holds and return the :class:`Result`.

    ``resume``: a run folder or checkpoint folder to continue (then ``config`` must be None:
    the run keeps its own, and ``overrides`` change keys of it). ``on_report``: called with
    each progress record as it is written (a dict, as in ``progress.jsonl``), in this thread:
    for live plots or a sweep's reporting. ``verbose``: show Ray's own start-up notices.

    Ray is started embedded and stopped at the end, unless this process is already connected
    to a Ray cluster (``ray.init`` before, or inside a Ray task), which the run then joins and
    leaves running. Bad input raises ``distrl.errors.ConfigError`` (a ``DistrlError``) with
    the same one-paragraph message the command line prints. Ctrl-C writes a checkpoint and
    raises KeyboardInterrupt.
    """
    state = None
    folder = None
    unreadable: list[Path] = []
    if resume is not None:
        if config is not None:
            raise ConfigError("resume continues a run with its own config; pass no config (overrides change keys).")
        saved, state, folder, unreadable = resumed(resume)
        user = user_layer(saved, overrides)
    else:
        user = user_layer(config, overrides)
    return run(user, state, folder, unreadable, on_report=on_report, verbose=verbose)


def resumed(path: Union[str, Path]) -> tuple[dict[str, Any], dict[str, Any], Path, list[Path]]:
    """A run to continue: its config (the user's layer to build on), the newest checkpoint's
    state that loads, that checkpoint's folder, and the newer ones that could not be read."""
    from distrl import checkpoint

    folder, state, skipped = checkpoint.load_readable(path)
    for unreadable, reason in skipped:
        print(f"distrl: checkpoint {str(unreadable)!r} is unreadable ({reason}); skipped.", flush=True)
    if skipped:
        print(f"distrl: resuming from {str(folder)!r}, the newest checkpoint that loads.", flush=True)
    user = yaml.safe_load(state["config_yaml"]) or {}
    # The output folder is where the checkpoint lies now (or output.dir / --out), not where
    # the run was first written: run folders may be moved or copied.
    (user.get("output") or {}).pop("dir", None)
    return user, state, folder, [path for path, _ in skipped]


def prepare(user: dict[str, Any]) -> tuple[Config, Optional[str]]:
    """The resolved config, checked as far as it can be before Ray starts, and the note on
    the stop rule when none was given."""
    from distrl.config import resolve
    from distrl.envs import check_id, custom

    config = resolve(user)
    custom.prepare(config.env)
    family = check_id(config.env.id)
    if family.check_spaces_on_driver:
        _check_spaces(config)
    return config, _default_stop(config)


def run(
    user: dict[str, Any],
    state: Optional[dict[str, Any]] = None,
    folder: Optional[Path] = None,
    unreadable: Sequence[Path] = (),
    *,
    on_report: Optional[Callable[[dict[str, Any]], None]] = None,
    verbose: bool = False,
) -> Result:
    """Resolve ``user``, choose the output folder and train: the steps ``distrl train`` and
    :func:`train` share. ``state``/``folder``/``unreadable``: a checkpoint to resume from,
    where it lies, and the newer ones of its run that could not be read."""
    from distrl import checkpoint

    config, note = prepare(user)
    if state is not None:
        _check_resume_compatible(config, state)
    out_dir = output_folder(config, folder, unreadable)
    config.output.dir = str(out_dir)

    from distrl.runtime import cluster

    if cluster.starts_embedded(config.runtime.address):
        cluster.prefer_loopback()  # must happen before Ray is imported (by the trainer below)
    from distrl.runtime.trainer import Trainer

    if note:
        print(f"distrl: {note}", flush=True)
    trainer = Trainer(config, out_dir, resume_state=state, on_report=on_report, verbose=verbose)
    reason = trainer.run()
    return Result(
        run_dir=out_dir,
        checkpoint=checkpoint.latest(out_dir),
        metrics=trainer.last_report,
        stop_reason=reason,
        config=config,
    )


def _default_stop(config: Config) -> Optional[str]:
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


def _check_resume_compatible(config: Config, state: dict[str, Any]) -> None:
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


def output_folder(config: Config, resumed_from: Optional[Path], unreadable: Sequence[Path] = ()) -> Path:
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


def _check_spaces(config: Config) -> None:
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
