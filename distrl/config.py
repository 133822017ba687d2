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
from distrl.algos.a2c import A2CConfig
from distrl.algos.a3c import A3CConfig
from distrl.algos.appo import APPOConfig
from distrl.algos.dqn import DQNConfig
from distrl.algos.impala import IMPALAConfig
from distrl.algos.ppo import PPOConfig
from distrl.algos.qlearning import QLearningConfig
from distrl.errors import ConfigError


def choices(*values: str, default: str) -> Any:
    return field(default=default, metadata={"choices": values})


@dataclass
class EnvConfig:
    # Any id of distrl.envs.make_env: gymnasium ids, ALE/<Game>-v5, ...
    id: str = "CartPole-v1"
    # Family options passed to make_env (frame_skip, screen_size, frame_stack, ...).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    kind: str = choices("auto", "mlp", "cnn", default="auto")
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = choices("tanh", "relu", "elu", "gelu", default="tanh")
    # MLP only: False gives the policy and the value function separate trunks.
    shared_trunk: bool = False
    # Q-networks only: a state-value and an advantage stream (Wang et al. 2016).
    dueling: bool = True


@dataclass
class RuntimeConfig:
    # "auto": as many workers as the cluster has CPUs to spare for them, growing and
    # shrinking with the cluster while training.
    num_workers: Union[int, Literal["auto"]] = 2
    # With "auto": at most this many, and the autoscaler is asked for their CPUs (None: no cap, no request).
    max_workers: Optional[int] = None
    # With "auto": how often (seconds) to look for room on nodes that joined.
    elastic_check_s: float = 5.0
    # With "auto": how long new workers may wait for a place before they are given up (the
    # first worker of a run waits on, for a node the autoscaler is starting).
    placement_patience_s: float = 60.0
    envs_per_worker: int = 4
    fragment_length: int = 32
    # Backpressure: sampled fragments a worker may have waiting for the learner.
    max_inflight_fragments: int = 2
    num_cpus_per_worker: float = 1.0
    num_cpus_per_learner: float = 1.0
    # "auto": one GPU when the cluster has one, else the learner runs on CPU.
    num_gpus_per_learner: Union[float, Literal["auto"]] = "auto"
    # None: start an embedded local Ray. "auto" or HOST:PORT: join a running cluster.
    address: Optional[str] = None
    # A worker that dies is replaced; the run gives up after this many replacements.
    max_worker_restarts: int = 100


@dataclass
class StopConfig:
    # Any rule that holds ends the run (exit 0). If none is set, the run stops at the
    # environment's registered reward_threshold when it has one, else runs until Ctrl-C.
    env_steps: Optional[int] = None
    reward: Optional[float] = None
    seconds: Optional[float] = None


@dataclass
class OutputConfig:
    # Where progress.jsonl, config.yaml, tb/ and checkpoints/ go (None: runs/<env>-<algo>-<time>).
    dir: Optional[str] = None
    report_every_s: float = 5.0
    checkpoint_every_s: float = 300.0
    keep_checkpoints: int = 3
    tensorboard: bool = True
    # "auto": a live bar on a terminal, one line per report otherwise.
    console: str = choices("auto", "bar", "lines", "off", default="auto")


@dataclass
class Config:
    algo: str = "ppo"
    seed: int = 0
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # One section per algorithm in distrl.algos.ALGORITHMS; only the chosen one is used.
    ppo: PPOConfig = field(default_factory=PPOConfig)
    a2c: A2CConfig = field(default_factory=A2CConfig)
    a3c: A3CConfig = field(default_factory=A3CConfig)
    impala: IMPALAConfig = field(default_factory=IMPALAConfig)
    appo: APPOConfig = field(default_factory=APPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    qlearning: QLearningConfig = field(default_factory=QLearningConfig)

    @property
    def algo_config(self) -> Any:
        return getattr(self, self.algo)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, with only the chosen algorithm's section."""
        data = dataclasses.asdict(self)
        for name in ALGORITHMS:
            if name != self.algo:
                data.pop(name, None)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------
# Building a Config from nested dicts, with type checks.


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
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
            f"Config section '{prefix.rstrip('.') or 'top level'}' must be a mapping of keys to "
            f"values, got {data!r}."
        )
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = prefix + str(name)
        if name not in names:
            raise _unknown_key(key, valid)
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value if value is not None else {}, key + ".", valid)
            continue
        allowed = names[name].metadata.get("choices")
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
            raise ConfigError(
                f"Config key '{key}' must be one of {', '.join(allowed)}; got {converted!r}.{hint}"
            )
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


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist. Ready-made configs are in configs/.")
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
        raise ConfigError(
            f"Unknown algorithm {algo!r}.{hint} Available: {', '.join(sorted(ALGORITHMS))}."
        )
    env_section = user.get("env")
    env_id = env_section.get("id", EnvConfig.id) if isinstance(env_section, dict) else EnvConfig.id
    if not isinstance(env_id, str):
        raise ConfigError(f"Config key 'env.id' expects an environment id string, got {env_id!r}.")
    merged = deep_merge(preset_for(algo, env_id), user)
    config = _build(Config, merged, "", _valid_keys(Config))
    validate(config)
    return config


def _positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"Config key '{key}' must be {'>= 0' if allow_zero else '> 0'}, got {value}.")


def validate(config: Config) -> None:
    """Range checks that types alone don't catch."""
    _positive("seed", config.seed, allow_zero=True)
    if not config.model.hidden_sizes or min(config.model.hidden_sizes) < 1:
        raise ConfigError(f"Config key 'model.hidden_sizes' needs one or more sizes >= 1, got {config.model.hidden_sizes}.")
    runtime = config.runtime
    if runtime.max_workers is not None:
        _positive("runtime.max_workers", runtime.max_workers)
    _positive("runtime.elastic_check_s", runtime.elastic_check_s)
    _positive("runtime.placement_patience_s", runtime.placement_patience_s)
    if runtime.num_workers == "auto" and runtime.num_cpus_per_worker <= 0:
        raise ConfigError(
            "runtime.num_workers=auto counts workers by runtime.num_cpus_per_worker, which is 0; "
            "give workers a CPU share (> 0) or a fixed runtime.num_workers."
        )
    if runtime.num_workers != "auto":
        _positive("runtime.num_workers", runtime.num_workers)
    _positive("runtime.envs_per_worker", runtime.envs_per_worker)
    _positive("runtime.fragment_length", runtime.fragment_length)
    _positive("runtime.max_inflight_fragments", runtime.max_inflight_fragments)
    _positive("runtime.num_cpus_per_worker", runtime.num_cpus_per_worker, allow_zero=True)
    _positive("runtime.num_cpus_per_learner", runtime.num_cpus_per_learner, allow_zero=True)
    if runtime.num_gpus_per_learner != "auto":
        _positive("runtime.num_gpus_per_learner", runtime.num_gpus_per_learner, allow_zero=True)
    _positive("output.report_every_s", config.output.report_every_s)
    _positive("output.checkpoint_every_s", config.output.checkpoint_every_s)
    _positive("output.keep_checkpoints", config.output.keep_checkpoints)
    if config.stop.env_steps is not None:
        _positive("stop.env_steps", config.stop.env_steps)
    if config.stop.seconds is not None:
        _positive("stop.seconds", config.stop.seconds)
