"""Doom scenarios through ViZDoom's own gymnasium environments (``VizdoomBasic-v1``, ...).

Preprocessing: the engine repeats each action for 4 tics (frame skip 4), the screen is
rendered gray at 160x120 and resized to 84x84, 4 frames are stacked, and the buttons are
offered as a discrete set of combinations (every combination of at most
``max_buttons_pressed`` buttons, or an explicit ``actions`` list). No window is ever opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, cast

import gymnasium as gym
import numpy as np

from distrl.envs.wrappers import ButtonCombos, EpisodeStats, FrameStack, ResizeFrame, RewardScale, check_options
from distrl.errors import EnvironmentNotAvailable

if TYPE_CHECKING:
    from vizdoom.gymnasium_wrapper.base_gymnasium_env import VizdoomEnv

# The scenarios of the ViZDoom paper and its follow-ups, by their gymnasium ids.
SCENARIOS = {
    "basic": "VizdoomBasic-v1",
    "defend_the_center": "VizdoomDefendCenter-v1",
    "defend_the_line": "VizdoomDefendLine-v1",
    "health_gathering": "VizdoomHealthGathering-v1",
    "deadly_corridor": "VizdoomDeadlyCorridor-v1",
    "my_way_home": "VizdoomMyWayHome-v1",
    "take_cover": "VizdoomTakeCover-v1",
    "predict_position": "VizdoomPredictPosition-v1",
}

DEFAULTS: dict[str, Any] = {
    "frame_skip": 4,
    "screen_size": 84,
    "grayscale": True,
    "frame_stack": 4,
    "resolution": "RES_160X120",  # the engine's render size, before resizing
    "max_buttons_pressed": 2,  # actions: every combination of at most this many buttons
    "actions": None,  # or an explicit list of button combos, e.g. [["ATTACK"], ["TURN_LEFT", "ATTACK"]]
    "reward_scale": 1.0,
    # The scenario's game variables (health, ammo, ...) beside the screen, as a Dict
    # observation {"screen", "variables"}: one encoder each (envs/packed.py).
    "game_variables": False,
    "game_variables_scale": 0.01,
}


def register() -> None:
    try:
        import vizdoom.gymnasium_wrapper  # noqa: F401  (registers the Vizdoom* ids)
    except ImportError:
        raise EnvironmentNotAvailable(
            "Doom environments need vizdoom, which is not installed. Install it with "
            "`pip install 'distrl[doom]'` (it ships the scenarios and the freedoom game data)."
        ) from None


def is_doom_id(env_id: str) -> bool:
    return env_id.startswith("Vizdoom")


class TimeoutIsTruncation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """ViZDoom reports both ``terminated`` and ``truncated`` when a scenario's time limit
    ends an episode. The state is not terminal (the player is alive), so its value must be
    bootstrapped: keep ``terminated`` only when the player died or the goal was reached
    before the limit."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated and truncated and not cast("VizdoomEnv", self.unwrapped).game.is_player_dead():
            terminated = False
        return obs, reward, terminated, truncated, info


class GameVariableMetrics(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The scenario's game variables (health, ammo, ...) and the kill count as they stand at
    an episode's end, in ``info["episode_metrics"]`` (lower-case names: ``killcount``,
    ``health``, ``ammo2``). Read from the engine, which keeps them after the episode ended;
    the observation's copy is zeros by then."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        from vizdoom import GameVariable

        game = cast("VizdoomEnv", env.unwrapped).game
        wanted = [GameVariable.KILLCOUNT, *game.get_available_game_variables()]
        self.variables = list(dict.fromkeys(wanted))  # the kill count once, first

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            game = cast("VizdoomEnv", self.unwrapped).game
            info = dict(info, episode_metrics={v.name.lower(): game.get_game_variable(v) for v in self.variables})
        return obs, reward, terminated, truncated, info


class Screen(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Keeps the screen buffer of ViZDoom's dict observation (``[H, W, C]`` uint8). With
    ``variables``, the scenario's game variables (health, ammo, ...) ride along in
    ``info["game_variables"]`` past the screen's resizing and stacking, for
    :class:`WithGameVariables` to put back into the observation."""

    def __init__(self, env: gym.Env, variables: bool = False):
        gym.utils.RecordConstructorArgs.__init__(self, variables=variables)
        gym.Wrapper.__init__(self, env)
        assert isinstance(env.observation_space, gym.spaces.Dict)  # ViZDoom's observations are a dict
        self.observation_space = env.observation_space["screen"]
        self.variables = variables

    def _split(self, observation: dict[str, Any], info: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        if self.variables:
            info = dict(info, game_variables=observation["gamevariables"])
        return observation["screen"], info

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self._split(observation, info)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        screen, info = self._split(observation, info)
        return screen, reward, terminated, truncated, info


class WithGameVariables(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The observation as ``{"screen": the preprocessed frames, "variables": the game
    variables times scale}``: what the player's status bar shows (health, ammo), which the
    84x84 screen no longer does. The scale (0.01 by default) brings health and ammo, which
    run to about 100, near the unit range the encoder's initialization expects."""

    def __init__(self, env: gym.Env, scale: float):
        gym.utils.RecordConstructorArgs.__init__(self, scale=scale)
        gym.Wrapper.__init__(self, env)
        count = cast("VizdoomEnv", env.unwrapped).game.get_available_game_variables_size()
        if count == 0:
            from distrl.errors import ConfigError

            raise ConfigError(
                "env.options.game_variables is on, and this scenario reports no game variables; turn it off "
                "for this scenario (my_way_home and predict_position report none, the others health or ammo)."
            )
        self.scale = scale
        self.observation_space = gym.spaces.Dict(
            {"screen": env.observation_space, "variables": gym.spaces.Box(-np.inf, np.inf, (count,), np.float32)}
        )

    def _observe(self, screen: Any, info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        info = dict(info)
        variables = np.asarray(info.pop("game_variables"), dtype=np.float32) * self.scale
        return {"screen": screen, "variables": variables}, info

    def reset(self, **kwargs):
        return self._observe(*self.env.reset(**kwargs))

    def step(self, action):
        screen, reward, terminated, truncated, info = self.env.step(action)
        observation, info = self._observe(screen, info)
        return observation, reward, terminated, truncated, info


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    check_options("doom", options, DEFAULTS)
    opts = {**DEFAULTS, **options}
    register()
    explicit = opts["actions"] is not None
    # "rgb_array" renders the screen buffer as [H, W, 3]: gray repeated in 3 channels when the
    # agent sees gray, so a recording shows what the agent saw. "human" would open a window.
    render: dict[str, Any] = {} if render_mode is None else {"render_mode": render_mode}
    env = gym.make(
        env_id,
        frame_skip=opts["frame_skip"],
        # 0 exposes the raw buttons (MultiBinary) for an explicit combo list.
        max_buttons_pressed=0 if explicit else opts["max_buttons_pressed"],
        screen_format="GRAY8" if opts["grayscale"] else "RGB24",
        screen_resolution=opts["resolution"],
        disable_env_checker=True,
        **render,
    )
    if explicit:
        buttons = [str(b).split(".")[-1] for b in cast("VizdoomEnv", env.unwrapped).game.get_available_buttons()]
        env = ButtonCombos(env, buttons, opts["actions"])
    env = TimeoutIsTruncation(env)
    env = GameVariableMetrics(env)
    env = Screen(env, variables=bool(opts["game_variables"]))
    env = EpisodeStats(env)
    if opts["reward_scale"] != 1.0:
        env = RewardScale(env, opts["reward_scale"])
    env = ResizeFrame(env, opts["screen_size"])
    if opts["frame_stack"] > 1:
        env = FrameStack(env, opts["frame_stack"])
    if opts["game_variables"]:
        env = WithGameVariables(env, float(opts["game_variables_scale"]))
    return env
