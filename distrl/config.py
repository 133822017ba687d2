"""The run's configuration: one dataclass tree, filled in layers.

    dataclass defaults
      < the algorithm's preset for the env family ("pixels" or "vector")
      < a YAML file (--config) or, on --resume, the run's own config.yaml
      < command-line flags (--env, --num-workers, ...)
      < --set a.b=c overrides

Every key is checked: an unknown key or a value of the wrong type raises ``ConfigError``
naming the key and the nearest valid one.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from distrl.algos import ALGORITHMS
from distrl.errors import ConfigError
from distrl.options import choices_of, help_of, option


@dataclass
class EnvConfig:
    id: str = option(
        "CartPole-v1",
        "environment id: a gymnasium id, ALE/<Game>-v5, Vizdoom*, retro/<Game>, distrl/* (`distrl envs`), "
        "or your own as 'package.module:EnvId'",
    )
    options: dict[str, Any] = option(
        help="family options passed to make_env: frame_skip, screen_size, frame_stack, ...", factory=dict
    )
    vectorize: str = option(
        "auto",
        "how a worker steps its env copies: auto uses a family's native batched env where there is one "
        "(ale-py's AtariVectorEnv for ALE/<Game>-v5: C++ frame skip, resize and stack), native insists on it, "
        "loop steps one gymnasium env per copy in Python",
        choices=("auto", "native", "loop"),
    )
    imports: list[str] = option(
        help="modules every process imports before it builds the env: your package that registers its env ids",
        factory=list,
    )
    entry_point: Optional[str] = option(
        None,
        "your env's constructor, 'package.module:make_env', registered under env.id; env.options are its "
        "keyword arguments",
    )


@dataclass
class ModelConfig:
    kind: str = option(
        "auto", "network trunk: auto (CNN for images, else MLP), mlp or cnn", choices=("auto", "mlp", "cnn")
    )
    cnn: str = option(
        "nature",
        "CNN trunk: nature (Mnih et al. 2015: 3 conv layers, 512 units) or small (Mnih et al. 2013, "
        "A3C's: 2 conv layers, 256 units, a third of the compute: for a learner on a few CPU cores)",
        choices=("nature", "small"),
    )
    hidden_sizes: list[int] = option(help="MLP layer widths", factory=lambda: [64, 64])
    activation: str = option("tanh", "MLP activation", choices=("tanh", "relu", "elu", "gelu"))
    shared_trunk: bool = option(False, "MLP only: one trunk for policy and value (false: separate trunks)")
    recurrent: str = option(
        "none",
        "a memory between the trunk and the heads: lstm or gru (ppo, a2c, a3c, impala, appo, pg); workers "
        "keep its state per env copy and the learner unrolls whole fragments from it",
        choices=("none", "lstm", "gru"),
    )
    recurrent_size: int = option(128, "units of the recurrent core")
    log_std: str = option(
        "parameter",
        "Box actions: the Gaussian's log std is one learned value per dimension (parameter) or an output of "
        "the network (state)",
        choices=("parameter", "state"),
    )
    log_std_init: float = option(0.0, "Box actions: the log std at the start (0: std 1)")
    action_bounds: str = option(
        "clip",
        "Box actions: the env gets the Gaussian's sample clipped to the bounds (clip) or squashed into them "
        "with tanh (squash); the policy is trained on the sample itself",
        choices=("clip", "squash"),
    )
    dueling: bool = option(True, "Q-networks only: a state-value and an advantage stream (Wang et al. 2016)")


@dataclass
class RuntimeConfig:
    num_workers: Union[int, Literal["auto"]] = option(
        2, "rollout workers, or auto: one per spare CPU of the cluster, growing and shrinking with it"
    )
    max_workers: Optional[int] = option(
        None, "with auto: at most this many, and the autoscaler is asked for their CPUs"
    )
    elastic_check_s: float = option(5.0, "with auto: seconds between looks for room on nodes that joined")
    placement_patience_s: float = option(
        60.0, "with auto: seconds new workers may wait for a place before they are given up (the first waits on)"
    )
    envs_per_worker: int = option(4, "environment copies per worker, stepped as one batch")
    fragment_length: int = option(32, "steps per env copy in one fragment")
    max_inflight_fragments: int = option(2, "backpressure: sampled fragments a worker may have waiting for the learner")
    num_cpus_per_worker: float = option(1.0, "CPUs Ray reserves for each rollout worker")
    num_cpus_per_learner: float = option(1.0, "CPUs Ray reserves for each learner")
    num_gpus_per_learner: Union[float, Literal["auto"]] = option(
        "auto", "GPUs for each learner; auto: one when the cluster has one, else the learners run on CPU"
    )
    num_learners: int = option(
        1,
        "data-parallel learners: each computes the loss on its share of every gradient step and they sum "
        "their gradients (torch.distributed: gloo on CPU, NCCL on GPU), so their weights stay equal; one per "
        "GPU where there are GPUs, else spread over the nodes (docs/design.md, Data-parallel learners)",
    )
    learner_threads: Union[int, Literal["auto"]] = option(
        "auto",
        "torch threads of a CPU learner; auto: 1 for a model without convolutions (its ops are too small to "
        "split), else every CPU of its node that the rollout workers there do not keep busy during updates "
        "(all of them when workers wait for the update)",
    )
    learner_precision: str = option(
        "fp32",
        "fp32, or bf16: the learner's updates run under bf16 autocast (convolutions and matrix products in "
        "bf16, the loss, targets and optimizer state in fp32); scripts/learner_levers.py measures what it buys",
        choices=("fp32", "bf16"),
    )
    learner_channels_last: bool = option(
        False,
        "the learner keeps conv weights and frames in channels-last memory order (NHWC): the same fp32 "
        "arithmetic, faster CPU convolution kernels; workers and checkpoints are unaffected",
    )
    address: Optional[str] = option(
        None, "null: start an embedded local Ray; auto or HOST:PORT: join a running cluster"
    )
    mode: str = option(
        "ray",
        "ray: every actor in a Ray process of its own; serial: the same actors and flow in this one process, "
        "no Ray started, each call run when it is made (for a debugger; README, Debugging in one process)",
        choices=("ray", "serial"),
    )
    max_worker_restarts: int = option(100, "dead workers are replaced; the run gives up after this many replacements")
    max_learner_restarts: int = option(
        10, "a dead learner, parameter server or replay shard is restarted; the run gives up after this many restarts"
    )
    learner_snapshot_every_s: float = option(
        30.0, "seconds between copies of the learner's state kept in the driver's memory, to restore a dead learner"
    )
    max_nonfinite_updates: int = option(
        10, "learner updates in a row whose gradient steps were skipped for a NaN or Inf loss before the run stops"
    )


@dataclass
class StopConfig:
    env_steps: Optional[int] = option(None, "stop after this many env steps (schedules anneal over it)")
    reward: Optional[float] = option(None, "stop when the mean return of the last 100 episodes reaches this")
    seconds: Optional[float] = option(None, "stop after this many seconds of training")
    on: str = option(
        "train",
        "which return stop.reward is compared with: train (the last 100 training episodes) or eval (the "
        "latest evaluation round's mean; needs eval.every_env_steps)",
        choices=("train", "eval"),
    )


@dataclass
class EvalConfig:
    every_env_steps: Optional[int] = option(
        None,
        "evaluate the newest weights every this many env steps, in a separate actor, while training goes on "
        "(null: no evaluation); the result is eval_return_mean in progress.jsonl",
    )
    episodes: int = option(10, "whole episodes per evaluation round")
    greedy: bool = option(True, "play the most likely action (DQN: no exploration); false: sample as in training")
    seed: int = option(12345, "every round plays its episodes from this env seed, so rounds differ by weights only")
    num_cpus: float = option(
        0.0, "CPUs Ray reserves for the evaluation actor (0: none; it runs at a lower OS priority than training)"
    )


@dataclass
class WandbConfig:
    project: Optional[str] = option(
        None, "W&B project to log the run to (null: no W&B); needs `pip install 'distrl[wandb]'`"
    )
    entity: Optional[str] = option(None, "W&B user or team that owns the project (null: your default entity)")
    mode: str = option(
        "online",
        "online: stream to the W&B server (after `wandb login`); offline: write OUT/wandb/ only, to upload "
        "later with `wandb sync`; disabled: log nothing",
        choices=("online", "offline", "disabled"),
    )
    group: Optional[str] = option(None, "W&B group that gathers related runs (seeds, sweeps) in one view")
    tags: list[str] = option(help="W&B tags of the run", factory=list)


@dataclass
class OutputConfig:
    dir: Optional[str] = option(
        None, "where progress.jsonl, config.yaml, tb/ and checkpoints/ go (null: runs/<env>-<algo>-<time>)"
    )
    report_every_s: float = option(5.0, "seconds between progress reports")
    checkpoint_every_s: float = option(300.0, "seconds between checkpoints")
    keep_checkpoints: int = option(3, "newest checkpoints kept")
    tensorboard: bool = option(True, "write TensorBoard events under tb/")
    console: str = option(
        "auto", "auto: a live bar on a terminal, one line per report otherwise", choices=("auto", "bar", "lines", "off")
    )
    wandb: WandbConfig = option(
        help="Weights & Biases: the TensorBoard scalars also logged to a W&B run (pip install 'distrl[wandb]')",
        factory=WandbConfig,
    )


@dataclass
class Config:
    """The run's settings. Any stop rule that holds ends the run (exit 0); with none set, the
    run stops at the environment's registered reward threshold, or runs until Ctrl-C."""

    algo: str = option("ppo", "the algorithm: " + ", ".join(ALGORITHMS))
    seed: int = option(0, "seeds the model, the workers' environments and replay sampling")
    env: EnvConfig = option(help="the environment", factory=EnvConfig)
    model: ModelConfig = option(help="the network", factory=ModelConfig)
    runtime: RuntimeConfig = option(help="workers, learner and cluster", factory=RuntimeConfig)
    stop: StopConfig = option(help="stop rules", factory=StopConfig)
    eval: EvalConfig = option(help="evaluation during training", factory=EvalConfig)
    output: OutputConfig = option(help="what a run writes", factory=OutputConfig)
    # The chosen algorithm's section, of its registered config class. In YAML (and --set) it
    # is the section named after the algorithm: `ppo: {lr: ...}`.
    algo_config: Any = field(default=None, repr=False, metadata={"section": True})

    def __post_init__(self):
        if self.algo_config is None and self.algo in ALGORITHMS:
            self.algo_config = ALGORITHMS[self.algo].config_class()

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, with the chosen algorithm's section under its name."""
        data = {
            f.name: dataclasses.asdict(getattr(self, f.name))
            if dataclasses.is_dataclass(getattr(self, f.name))
            else getattr(self, f.name)
            for f in _plain_fields(Config)
        }
        data[self.algo] = dataclasses.asdict(self.algo_config)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_commented_yaml(self) -> str:
        """The resolved config with each key's help text as a comment (``--print-config``)."""
        lines: list[str] = []
        for f in _plain_fields(Config):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                lines.append(f"{f.name}:  # {help_of(f)}")
                lines += _commented_section(value)
            else:
                lines.append(_commented_line(f.name, value, f, ""))
        lines.append(f"{self.algo}:  # {ALGORITHMS[self.algo].paper}")
        lines += _commented_section(self.algo_config)
        return "\n".join(lines) + "\n"


def _plain_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("section")]


def _commented_line(name: str, value: Any, f: dataclasses.Field, indent: str) -> str:
    text = yaml.safe_dump({name: value}, default_flow_style=True, width=10_000).strip()[1:-1]
    allowed = choices_of(f)
    note = help_of(f) + (f" ({' | '.join(allowed)})" if allowed else "")
    return f"{indent}{text}  # {note}"


def _commented_section(section: Any, indent: str = "  ") -> list[str]:
    lines: list[str] = []
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):  # a nested section, such as output.wandb
            lines.append(f"{indent}{f.name}:  # {help_of(f)}")
            lines += _commented_section(value, indent + "  ")
        else:
            lines.append(_commented_line(f.name, value, f, indent))
    return lines


def key_help() -> list[tuple[str, str, str]]:
    """(key, default, help) for every config key, the algorithms' sections included, in
    the order `distrl train --help` lists them."""
    rows: list[tuple[str, str, str]] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("section"):
                continue
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], prefix + f.name + ".")
                continue
            # Every field has a default or a default_factory: the factory is callable here.
            factory = typing.cast(typing.Callable[[], Any], f.default_factory)
            default = f.default if f.default is not dataclasses.MISSING else factory()
            allowed = choices_of(f)
            note = help_of(f) + (f" ({' | '.join(allowed)})" if allowed else "")
            rows.append(
                (prefix + f.name, yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("\n..."), note)
            )

    walk(Config, "")
    for name, spec in ALGORITHMS.items():
        walk(spec.config_class, name + ".")
    return rows


# ---------------------------------------------------------------------------------------
# Building a Config from nested dicts, with type checks.


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            for name, spec in ALGORITHMS.items():
                keys += [name] + _valid_keys(spec.config_class, name + ".")
            continue
        key = prefix + f.name
        keys.append(key)
        if dataclasses.is_dataclass(hints[f.name]):
            keys += _valid_keys(hints[f.name], key + ".")
    return keys


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return ConfigError(
        f"Unknown config key '{key}'.{hint} Valid keys are listed in the resolved config "
        f"that every run writes to OUT/config.yaml (or run `distrl train --print-config`)."
    )


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise _Mismatch. Strings from the command line are
    accepted where they spell a number ("1e-3", "150_000")."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Mismatch
    if tp is type(None):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        raise _Mismatch
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise _Mismatch
    if tp is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                raise _Mismatch from None
            if number.is_integer():
                return int(number)
        raise _Mismatch
    if tp is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.replace("_", ""))
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item_type, key) for v in value]
        if isinstance(value, str):  # "64,64" from the command line
            return [_coerce(v.strip(), item_type, key) for v in value.split(",") if v.strip()]
        raise _Mismatch
    if origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise _Mismatch
    raise _Mismatch


def _build(cls: type, data: dict[str, Any], prefix: str, valid: list[str]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"Config section '{prefix.rstrip('.') or 'top level'}' must be a mapping of keys to values, got {data!r}."
        )
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("section")}
    kwargs = {}
    for name, value in data.items():
        key = prefix + str(name)
        if cls is Config and name in ALGORITHMS:
            # Every algorithm's section is checked; only the chosen one is kept.
            section = _build(ALGORITHMS[name].config_class, value if value is not None else {}, key + ".", valid)
            if name == data.get("algo", Config.algo):
                kwargs["algo_config"] = section
            continue
        if name not in names:
            raise _unknown_key(key, valid)
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value if value is not None else {}, key + ".", valid)
            continue
        allowed = choices_of(names[name])
        if allowed and isinstance(value, bool) and ("on" if value else "off") in allowed:
            value = "on" if value else "off"  # YAML 1.1 reads a bare off/on as a boolean
        try:
            converted = _coerce(value, tp, key)
        except _Mismatch:
            raise ConfigError(
                f"Config key '{key}' expects {_type_name(tp)}, got {value!r}. "
                f"Fix it in the config file or with --set {key}=VALUE."
            ) from None
        if allowed and converted not in allowed:
            close = difflib.get_close_matches(str(converted), allowed, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"Config key '{key}' must be one of {', '.join(allowed)}; got {converted!r}.{hint}")
        kwargs[name] = converted
    try:
        return cls(**kwargs)
    except ValueError as error:  # a section's own range checks (__post_init__)
        raise ConfigError(str(error)) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; nested mappings merge key by key, except
    ``env.options``-style free mappings, which also merge key by key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_dotted(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    parts = dotted_key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value); the value is read as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (for example --set ppo.lr=3e-4), got {text!r}.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects KEY=VALUE with a non-empty key, got {text!r}.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` as a path when that file exists, else the shipped config of
    that name (``ppo_pong``, ``tutorials/catch_dqn``; see ``distrl configs``). A file of the
    user's wins over a shipped one of the same name, as a path given is meant literally."""
    from distrl import shipped

    path = Path(name)
    if path.is_file():
        return path
    found = shipped.find(str(name))
    if found is not None:
        return found
    near = shipped.close_matches(str(name))
    hint = f" Did you mean {' or '.join(near)}?" if near else ""
    raise ConfigError(
        f"Config {str(name)!r} is neither a file nor one of the configs that ship with distrl.{hint} "
        f"`distrl configs` lists those, by the names --config takes."
    )


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = find_config(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"Config file {str(path)!r} is not valid YAML{where}: {error}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of keys to values.")
    return data


def preset_for(algo: str, env_id: str) -> dict[str, Any]:
    """The algorithm's preset for the family of ``env_id`` ("pixels" or "vector")."""
    from distrl.envs import uses_pixels

    spec = ALGORITHMS.get(algo)
    if spec is None:
        return {}
    kind = "pixels" if uses_pixels(env_id) else "vector"
    return copy.deepcopy(spec.presets.get(kind, {}))


def resolve(user: dict[str, Any]) -> Config:
    """Build the Config for ``user``'s nested values on top of defaults and the preset."""
    algo = user.get("algo", Config.algo)
    if not isinstance(algo, str) or algo not in ALGORITHMS:
        close = difflib.get_close_matches(str(algo), list(ALGORITHMS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown algorithm {algo!r}.{hint} Available: {', '.join(sorted(ALGORITHMS))}.")
    env_section = user.get("env")
    env_id = env_section.get("id", EnvConfig.id) if isinstance(env_section, dict) else EnvConfig.id
    if not isinstance(env_id, str):
        raise ConfigError(f"Config key 'env.id' expects an environment id string, got {env_id!r}.")
    merged = deep_merge(preset_for(algo, env_id), user)
    config = _build(Config, merged, "", _valid_keys(Config))
    validate(config)
    settle = ALGORITHMS[config.algo].resolve
    if settle is not None:
        settle(config.algo_config, config)
    return config


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"Config key '{key}' must be {'>= 0' if allow_zero else '> 0'}, got {value}.")


def validate(config: Config) -> None:
    """Range checks that types alone don't catch."""
    _positive("seed", config.seed, allow_zero=True)
    if not config.model.hidden_sizes or min(config.model.hidden_sizes) < 1:
        raise ConfigError(
            f"Config key 'model.hidden_sizes' needs one or more sizes >= 1, got {config.model.hidden_sizes}."
        )
    runtime = config.runtime
    if runtime.max_workers is not None:
        _positive("runtime.max_workers", runtime.max_workers)
    _positive("runtime.elastic_check_s", runtime.elastic_check_s)
    _positive("runtime.max_nonfinite_updates", runtime.max_nonfinite_updates)
    _positive("runtime.learner_snapshot_every_s", runtime.learner_snapshot_every_s)
    _positive("runtime.max_learner_restarts", runtime.max_learner_restarts, allow_zero=True)
    _positive("runtime.placement_patience_s", runtime.placement_patience_s)
    if runtime.num_workers == "auto" and runtime.num_cpus_per_worker <= 0:
        raise ConfigError(
            "runtime.num_workers=auto counts workers by runtime.num_cpus_per_worker, which is 0; "
            "give workers a CPU share (> 0) or a fixed runtime.num_workers."
        )
    if runtime.num_workers != "auto":
        _positive("runtime.num_workers", runtime.num_workers)
    if runtime.mode == "serial" and (runtime.num_workers == "auto" or runtime.address is not None):
        raise ConfigError(
            "runtime.mode=serial runs every actor in this one process: it has no cluster to join "
            f"(runtime.address={runtime.address!r}) or grow with (runtime.num_workers={runtime.num_workers!r}). "
            "Give a fixed runtime.num_workers and no address, or use runtime.mode=ray."
        )
    _positive("runtime.envs_per_worker", runtime.envs_per_worker)
    _positive("runtime.fragment_length", runtime.fragment_length)
    _positive("runtime.max_inflight_fragments", runtime.max_inflight_fragments)
    _positive("runtime.num_cpus_per_worker", runtime.num_cpus_per_worker, allow_zero=True)
    _positive("runtime.num_cpus_per_learner", runtime.num_cpus_per_learner, allow_zero=True)
    _positive("runtime.num_learners", runtime.num_learners)
    if runtime.num_learners > 1:
        single = ALGORITHMS[config.algo].single_learner
        if single:
            raise ConfigError(f"runtime.num_learners={runtime.num_learners}: {config.algo} runs one learner: {single}.")
        if runtime.mode == "serial":
            raise ConfigError(
                f"runtime.mode=serial runs every actor in this one process, with one learner; "
                f"runtime.num_learners={runtime.num_learners} needs runtime.mode=ray."
            )
    if runtime.num_gpus_per_learner != "auto":
        _positive("runtime.num_gpus_per_learner", runtime.num_gpus_per_learner, allow_zero=True)
    if runtime.learner_threads != "auto":
        _positive("runtime.learner_threads", runtime.learner_threads)
    _positive("output.report_every_s", config.output.report_every_s)
    _positive("output.checkpoint_every_s", config.output.checkpoint_every_s)
    _positive("output.keep_checkpoints", config.output.keep_checkpoints)
    if config.stop.env_steps is not None:
        _positive("stop.env_steps", config.stop.env_steps)
    if config.stop.seconds is not None:
        _positive("stop.seconds", config.stop.seconds)
    if config.eval.every_env_steps is not None:
        _positive("eval.every_env_steps", config.eval.every_env_steps)
    _positive("eval.episodes", config.eval.episodes)
    _positive("eval.num_cpus", config.eval.num_cpus, allow_zero=True)
    if config.stop.on == "eval" and config.eval.every_env_steps is None:
        raise ConfigError(
            "stop.on=eval compares stop.reward with the evaluation return, but evaluation is off: set "
            "eval.every_env_steps (say 10000) too, or use stop.on=train."
        )
