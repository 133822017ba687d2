"""One factory for every environment distrl trains on.

``make_env(env_id, seed=None, **options)`` picks the family from the id, applies the
family's standard preprocessing (``options`` override its defaults) and returns a
``gymnasium.Env``. Rollout workers, evaluation and benchmarks all build envs here;
``render_mode="rgb_array"`` (for recording videos) leaves the preprocessing as it is.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import gymnasium as gym

from distrl.envs import atari, classic, custom, doom, retro, teaching
from distrl.envs.packed import PackObservation, is_composite
from distrl.envs.wrappers import SeedFirstReset
from distrl.errors import EnvironmentNotAvailable


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    pixels: Callable[[str], bool]  # image observations for this id: the "pixels" presets apply
    make: Callable[..., gym.Env]
    defaults: dict[str, Any]
    example_ids: tuple[str, ...]
    install: str = ""
    # Options that evaluation adds (play whole games, no training-only shortcuts).
    eval_options: dict[str, Any] = field(default_factory=dict)
    # Emulator frames per agent step, for env_frames in progress.jsonl.
    frame_skip_option: Optional[str] = None
    # Families of unlike environments list their options per id instead.
    defaults_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Emulator frames per second where the env's metadata misstates it; a recording plays at
    # this rate over the frame skip, the game's own speed.
    frames_per_second: Optional[float] = None
    # Which ids are this family's, by their look alone (a prefix); family_of asks the
    # families in FAMILIES' order, and ids none claims are gymnasium's ("classic").
    claims: Callable[[str], bool] = lambda env_id: False
    # Makes the family's ids known to gymnasium (imports the package that registers them);
    # raises EnvironmentNotAvailable with the install line when it is missing.
    register: Callable[[], None] = lambda: None
    # Checks an id before any process starts; the default asks gymnasium's registry.
    check: Optional[Callable[[str], None]] = None
    # Does make_env check the id first (for the did-you-mean message of ids in a namespace
    # that gymnasium's own error would not give)?
    check_on_make: bool = False
    # Plain gymnasium ids that the family's package registers (ale-py's PongNoFrameskip-v4),
    # asked after every family's claims.
    owns_registered: Callable[[str], bool] = lambda env_id: False
    # Ids that have a native batched env (ale-py's AtariVectorEnv, envs/vector.py).
    native_batch: Callable[[str], bool] = lambda env_id: False
    # Are its envs cheap enough to build on the driver before Ray starts, to refuse spaces
    # the algorithm cannot take there (the user's own gymnasium envs)?
    check_spaces_on_driver: bool = False


FAMILIES: dict[str, Family] = {
    "atari": Family(
        name="atari",
        description="Atari 2600 games through ale-py, DeepMind preprocessing",
        pixels=lambda env_id: True,
        make=atari.make,
        defaults=atari.DEFAULTS,
        example_ids=("ALE/Pong-v5", "ALE/Breakout-v5", "ALE/SpaceInvaders-v5"),
        install="pip install 'distrl[atari]'",
        eval_options=atari.EVAL_OPTIONS,
        frame_skip_option="frame_skip",
        frames_per_second=atari.FRAMES_PER_SECOND,
        claims=lambda env_id: env_id.startswith("ALE/"),
        owns_registered=atari.owns_registered_id,
        register=atari.register,
        native_batch=lambda env_id: atari.batched_game(env_id) is not None,
    ),
    "doom": Family(
        name="doom",
        description="Doom scenarios through ViZDoom, headless",
        pixels=lambda env_id: True,
        make=doom.make,
        defaults=doom.DEFAULTS,
        example_ids=tuple(doom.SCENARIOS.values()),
        install="pip install 'distrl[doom]'",
        frame_skip_option="frame_skip",
        claims=doom.is_doom_id,
        register=doom.register,
        check_on_make=True,
    ),
    "retro": Family(
        name="retro",
        description="console games through stable-retro, one emulator process per copy",
        pixels=lambda env_id: True,
        make=retro.make,
        defaults=retro.DEFAULTS,
        example_ids=("retro/Airstriker-Genesis-v0", "retro/SonicTheHedgehog-Genesis-v0", "retro/SuperMarioBros-Nes-v0"),
        install="pip install 'distrl[retro]'; other ROMs: python -m stable_retro.import DIR",
        frame_skip_option="frame_skip",
        claims=lambda env_id: env_id.startswith(retro.PREFIX),
        check=retro.check_game,  # retro ids are not in gymnasium's registry
    ),
    "distrl": Family(
        name="distrl",
        description="distrl's own teaching environments",
        pixels=teaching.is_pixels,
        make=teaching.make,
        defaults={},
        example_ids=tuple(teaching.IDS),
        defaults_by_id=teaching.DEFAULTS,
        claims=lambda env_id: env_id.startswith("distrl/"),
        register=teaching.register,
        check_on_make=True,
    ),
    "classic": Family(
        name="classic",
        description="any gymnasium.make id: classic control, toy text, ...",
        pixels=lambda env_id: False,
        make=classic.make,
        defaults=classic.DEFAULTS,
        example_ids=("CartPole-v1", "MountainCar-v0", "Acrobot-v1", "FrozenLake-v1"),
        check_spaces_on_driver=True,
    ),
}


def family_of(env_id: str) -> Family:
    """The family an id belongs to; ids no family claims are plain gymnasium ids."""
    for family in FAMILIES.values():
        if family.claims(env_id):
            return family
    if custom.split_module(env_id)[0] is not None:
        return FAMILIES["classic"]  # gymnasium's "module:EnvId" form: the user's own env
    for family in FAMILIES.values():
        if family.owns_registered(env_id):
            return family
    return FAMILIES["classic"]


def frame_stack_of(env_id: str, options: dict[str, Any]) -> int:
    """How many frames an observation of ``env_id`` stacks (1 for vector observations)."""
    family = family_of(env_id)
    defaults = family.defaults_by_id.get(env_id, family.defaults)
    if "frame_stack" not in defaults or options.get("game_variables"):
        # Doom's screen with its game variables is a packed Dict row (envs/packed.py), which
        # replay stores whole rather than one frame at a time.
        return 1
    return int(options.get("frame_stack", defaults["frame_stack"]) or 1)


def uses_pixels(env_id: str) -> bool:
    return family_of(env_id).pixels(env_id)


def frames_per_step(env_id: str, options: dict[str, Any]) -> int:
    family = family_of(env_id)
    if family.frame_skip_option is None:
        return 1
    return int(options.get(family.frame_skip_option, family.defaults[family.frame_skip_option]))


def _unknown_id(env_id: str) -> EnvironmentNotAvailable:
    known = list(gym.registry.keys())
    close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return EnvironmentNotAvailable(
        f"Unknown environment id {env_id!r}.{hint} `distrl envs` lists the families and their "
        f"ids; any id registered with gymnasium works too. For your own environment, use {custom.FORMS}."
    )


def check_id(env_id: str) -> Family:
    """Fail early, before any process starts, on an id no family or gymnasium knows."""
    family = family_of(env_id)
    if family.check is not None:
        family.check(env_id)
        return family
    family.register()
    if custom.split_module(env_id)[1] not in gym.registry:
        raise _unknown_id(env_id)
    return family


def make_env(env_id: str, seed: Optional[int] = None, render_mode: Optional[str] = None, **options: Any) -> gym.Env:
    """Build ``env_id`` with its family's preprocessing; ``options`` override the defaults.

    ``render_mode="rgb_array"`` makes ``render()`` return the full colour screen a person
    would see, not the preprocessed observation; training leaves it at None (no rendering).
    """
    family = family_of(env_id)
    if family.check_on_make:
        check_id(env_id)  # an unknown id in the family's namespace gets the did-you-mean message
    try:
        env = family.make(env_id, render_mode=render_mode, **options)
    except gym.error.Error as error:
        if isinstance(error, (gym.error.NameNotFound, gym.error.VersionNotFound, gym.error.NamespaceNotFound)):
            raise _unknown_id(env_id) from None
        raise EnvironmentNotAvailable(f"Could not create environment {env_id!r}: {error}") from None
    except TypeError as error:
        if render_mode is not None and "unexpected keyword argument 'render_mode'" in str(error):
            raise EnvironmentNotAvailable(
                f"Environment {env_id!r} draws no pictures (its constructor takes no render_mode), so "
                f"there is nothing to record. Videos work for the pixel games and for gymnasium envs "
                f"that render, such as CartPole-v1."
            ) from None
        # gymnasium.make passes unknown keyword options to the env's constructor.
        raise EnvironmentNotAvailable(
            f"Environment {env_id!r} does not accept the options {sorted(options)}: {error}. "
            f"Check env.options in your config."
        ) from None
    if is_composite(env.observation_space):
        env = PackObservation(env)  # one flat row per observation; the model unpacks it (envs/packed.py)
    return SeedFirstReset(env, seed)


teaching.register()  # gymnasium.make("distrl/...") works once distrl.envs is imported

__all__ = [
    "FAMILIES",
    "Family",
    "check_id",
    "family_of",
    "frame_stack_of",
    "frames_per_step",
    "make_env",
    "uses_pixels",
]
