"""Sega, Nintendo and other console games through stable-retro, as ``retro/<Game>`` ids
(``retro/SonicTheHedgehog-Genesis-v0``, option ``state=GreenHillZone.Act1``).

``state`` may also be a list: each episode then starts from one of its states, drawn
uniformly with the env's seed (the Retro Contest trained one policy over 13 Sonic zones
this way). An entry is a state name of the game's integration or a path to a ``.state``
file, gzip'd as stable-retro saves them (``env.unwrapped.em.get_state()``).

Preprocessing: frame skip 4, 84x84 gray, 4-frame stack, a discrete action set of button
combinations chosen per game, a per-game reward scale. stable-retro allows one emulator per
process, so each copy runs in its own child process (``subprocess=True``, the default).
Airstriker-Genesis-v0 ships with stable-retro; other games need their ROM imported with
``python -m stable_retro.import DIR``.
"""

from __future__ import annotations

import difflib
import functools
import gzip
from pathlib import Path
from typing import Any, Optional, cast

import gymnasium as gym
import numpy as np

from distrl.envs.wrappers import (
    ButtonCombos,
    EpisodeStats,
    FrameStack,
    MaxAndSkip,
    PlayingButtons,
    ResizeFrame,
    RewardScale,
    check_options,
)
from distrl.errors import ConfigError, EnvironmentNotAvailable

PREFIX = "retro/"

DEFAULTS: dict[str, Any] = {
    "state": None,  # None: the game's default start state; a name, a .state path, or a list of them
    "scenario": None,  # None: the game's "scenario" (reward and end rules); e.g. "contest" for Sonic's x-progress
    "frame_skip": 4,
    "screen_size": 84,
    "grayscale": True,
    "frame_stack": 4,
    # a list of button combos, e.g. [["LEFT"], ["RIGHT", "B"]]; None: the game's set; "buttons": the pad
    # itself, a MultiBinary of its playing buttons (for ppo, a2c, a3c, impala, appo)
    "actions": None,
    "reward_scale": None,  # None: the game's default (0.01 for Sonic, else 1)
    "progress_only": False,  # reward only new progress: no penalty for going back (Sonic)
    "max_episode_steps": 4500,  # agent steps (18,000 frames, 5 minutes at 60 fps)
    "subprocess": True,  # each copy in its own process (stable-retro allows one emulator per process)
}

# The 7 combos of the OpenAI Retro Contest baselines (Nichol et al. 2018, "Gotta Learn Fast").
SONIC_ACTIONS = [["LEFT"], ["RIGHT"], ["LEFT", "DOWN"], ["RIGHT", "DOWN"], ["DOWN"], ["DOWN", "B"], ["B"]]
# gym-super-mario-bros' SIMPLE_MOVEMENT on the NES pad: A jumps, B runs.
MARIO_ACTIONS = [[], ["RIGHT"], ["RIGHT", "A"], ["RIGHT", "B"], ["RIGHT", "A", "B"], ["A"], ["LEFT"]]
# Buttons that pause or configure the console rather than play.
SYSTEM_BUTTONS = {None, "MODE", "START", "SELECT"}


def game_of(env_id: str) -> str:
    return env_id[len(PREFIX) :]


def default_actions(game: str, buttons: list[Optional[str]]) -> list[list[str]]:
    if game.startswith("SonicTheHedgehog") or game.startswith("SonicAndKnuckles"):
        return SONIC_ACTIONS
    if game.startswith("SuperMarioBros") and game.endswith("-Nes-v0"):
        return MARIO_ACTIONS
    # Generic: nothing pressed, or one playing button.
    nothing: list[str] = []
    return [nothing] + [[button] for button in buttons if button is not None and button not in SYSTEM_BUTTONS]


def default_reward_scale(game: str) -> float:
    return 0.01 if game.startswith("Sonic") else 1.0


def _stable_retro():
    try:
        import stable_retro
    except ImportError:
        raise EnvironmentNotAvailable(
            "Console games need stable-retro, which is not installed. Install it with `pip install 'distrl[retro]'`."
        ) from None
    return stable_retro


def check_game(env_id: str) -> None:
    """Fail early with the fix: an unknown game names the nearest known ones, a game whose
    ROM is missing names the import command."""
    stable_retro = _stable_retro()
    data = stable_retro.data
    game = game_of(env_id)
    known = data.list_games(data.Integrations.ALL)
    if game not in known:
        close = difflib.get_close_matches(game, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(PREFIX + c) for c in close)}?" if close else ""
        raise EnvironmentNotAvailable(
            f"stable-retro has no game {game!r}.{hint} Ids are 'retro/<Game>-<System>-v0'; "
            f'`python -c "import stable_retro; print(stable_retro.data.list_games())"` lists them.'
        )
    try:
        data.get_romfile_path(game, data.Integrations.ALL)
    except FileNotFoundError:
        raise EnvironmentNotAvailable(
            f"The ROM of {game} is not imported, so stable-retro cannot run it. stable-retro ships "
            f"only a few free ROMs (Airstriker-Genesis-v0); for other games, put your own ROM files "
            f"in a folder and run `python -m stable_retro.import DIR` (Sega Genesis classics bought "
            f"on Steam: `python -m stable_retro.scripts.import_sega_classics`). Then run again."
        ) from None


def _state_file(game: str, state: str) -> Optional[str]:
    """The file of a state: a path to a ``.state`` file, or a name in the game's integration."""
    if state.endswith(".state") and Path(state).expanduser().is_file():
        return str(Path(state).expanduser())
    data = _stable_retro().data
    name = state if state.endswith(".state") else state + ".state"
    return data.get_file_path(game, name, data.Integrations.ALL)


def check_state(game: str, state: Optional[str | list[str]]) -> None:
    if state is None:
        return
    states = [state] if isinstance(state, str) else state
    if not isinstance(states, list) or not states or not all(isinstance(entry, str) for entry in states):
        raise EnvironmentNotAvailable(
            f"env.options.state must be a state name, a path to a .state file, or a non-empty list of them; "
            f"got {state!r}."
        )
    for entry in states:
        if _state_file(game, entry) is None:
            known = _stable_retro().data.list_states(game, _stable_retro().data.Integrations.ALL)
            raise EnvironmentNotAvailable(
                f"{game} has no state {entry!r}; its states are {known} (a path to a .state file works too)."
            )


def check_scenario(game: str, scenario: Optional[str]) -> None:
    if scenario is None or (scenario.endswith(".json") and Path(scenario).is_file()):
        return
    data = _stable_retro().data
    if data.get_file_path(game, scenario + ".json", data.Integrations.ALL) is None:
        folder = Path(data.get_file_path(game, "data.json", data.Integrations.ALL) or ".").parent
        known = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("data", "metadata", "xpos"))
        raise EnvironmentNotAvailable(
            f"{game} has no scenario {scenario!r}; its scenarios are {known} (a path to a .json file works too)."
        )


class StartStates(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Starts each episode from a state drawn from ``states``. stable-retro's env holds one
    start state (``initial_state``, set by ``load_state``) and restores it on reset; this
    swaps it before each reset. The draw uses its own generator, seeded by reset's seed,
    so a seeded run replays its sequence of levels. ``info["start_state"]`` names the draw."""

    def __init__(self, env: gym.Env, game: str, states: list[str]):
        gym.utils.RecordConstructorArgs.__init__(self, game=game, states=states)
        gym.Wrapper.__init__(self, env)
        self.names = list(states)
        self._saves = []
        for state in self.names:
            with gzip.open(cast(str, _state_file(game, state)), "rb") as handle:
                self._saves.append(handle.read())
        self._rng = np.random.default_rng()

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        index = int(self._rng.integers(len(self._saves)))
        retro_env = self.env.unwrapped
        retro_env.initial_state = self._saves[index]  # type: ignore[attr-defined]
        observation, info = self.env.reset(seed=seed, options=options)
        return observation, {**info, "start_state": self.names[index]}


def make_local(env_id: str, options: dict[str, Any], render_mode: Optional[str] = None) -> gym.Env:
    """The preprocessed env in this process (the child's side when ``subprocess`` is on)."""
    stable_retro = _stable_retro()
    game = game_of(env_id)
    check_game(env_id)
    check_state(game, options["state"])
    check_scenario(game, options["scenario"])
    # stable-retro's default, "human", opens a window; "rgb_array" only keeps the last screen.
    kwargs = {"render_mode": render_mode}
    if options["scenario"] is not None:
        kwargs["scenario"] = options["scenario"]
    env = stable_retro.make(game, **kwargs)
    if options["state"] is not None:
        env = StartStates(env, game, [options["state"]] if isinstance(options["state"], str) else options["state"])
    buttons = list(env.unwrapped.buttons)
    if options["actions"] == "buttons":
        env = PlayingButtons(env, buttons, SYSTEM_BUTTONS)
    else:
        env = ButtonCombos(env, buttons, options["actions"] or default_actions(game, buttons))
    env = MaxAndSkip(env, options["frame_skip"])
    if options["max_episode_steps"]:
        env = gym.wrappers.TimeLimit(env, options["max_episode_steps"])
    env = EpisodeStats(env)
    if options["progress_only"]:
        env = ProgressOnly(env)
    scale = options["reward_scale"] if options["reward_scale"] is not None else default_reward_scale(game)
    if scale != 1.0:
        env = RewardScale(env, scale)
    env = ResizeFrame(env, options["screen_size"], to_gray=options["grayscale"])
    if options["frame_stack"] > 1:
        env = FrameStack(env, options["frame_stack"])
    return env


class ProgressOnly(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """Rewards only progress beyond the best so far in the episode: going back costs nothing,
    and returning to where one was earns nothing (the Retro Contest's "allow backtracking")."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)
        self._total = 0.0
        self._best = 0.0

    def reset(self, **kwargs):
        self._total = self._best = 0.0
        return self.env.reset(**kwargs)

    def reward(self, reward):
        self._total += float(reward)
        gained = max(0.0, self._total - self._best)
        self._best = max(self._best, self._total)
        return gained


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    check_options("retro", options, DEFAULTS)
    opts = {**DEFAULTS, **options}
    check_game(env_id)  # in this process, so a missing ROM is reported before a child starts
    check_state(game_of(env_id), opts["state"])  # and a bad state or scenario too
    check_scenario(game_of(env_id), opts["scenario"])
    if isinstance(opts["actions"], str) and opts["actions"] != "buttons":
        raise ConfigError(
            f"env.options.actions is a list of button combos, null for the game's set, or 'buttons' for the pad "
            f"itself (a MultiBinary action); got {opts['actions']!r}."
        )
    if opts["subprocess"]:
        from distrl.envs.subprocess_env import SubprocessEnv

        return SubprocessEnv(functools.partial(make_local, env_id, opts, render_mode), name=env_id)
    return make_local(env_id, opts, render_mode)
