"""Atari 2600 games through ale-py, with the DeepMind preprocessing (Mnih et al. 2015;
Machado et al. 2018 for sticky actions): no-op starts, frame skip 4 with a max over the last
two frames, 84x84 gray, 4-frame stack, life loss as terminal in training. Reward clipping
is done by the learner, so episode returns stay game scores."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional, cast

import gymnasium as gym

from distrl.envs.wrappers import EpisodeStats, FrameStack, MaxAndSkip, MaxPool2, ResizeFrame, check_options
from distrl.errors import EnvironmentNotAvailable

if TYPE_CHECKING:
    from ale_py.env import AtariEnv

DEFAULTS = {
    "frame_skip": 4,
    "noop_max": 30,
    "screen_size": 84,
    # "area": each pixel the mean of the screen it covers (OpenCV's INTER_AREA, DeepMind's
    # preprocessing); "max": resize to twice screen_size, then keep the brightest pixel of each
    # 2x2 block, so that a ball smaller than a pixel keeps its contrast (wrappers.max_pool2).
    "downscale": "area",
    "grayscale": True,
    "frame_stack": 4,
    "terminal_on_life_loss": True,
    "fire_reset": True,
    "repeat_action_probability": 0.25,
    "full_action_space": False,
    "max_episode_frames": 108_000,
}

# Evaluation plays whole games: losing a life is not the end of an episode.
EVAL_OPTIONS = {"terminal_on_life_loss": False}

# The 2600 draws 60 frames a second (NTSC). ale-py's metadata says render_fps 30 for every
# game, which would play a recording at half speed.
FRAMES_PER_SECOND = 60


def register() -> None:
    try:
        import ale_py
    except ImportError:
        raise EnvironmentNotAvailable(
            "Atari environments need ale-py, which is not installed. Install it with "
            "`pip install 'distrl[atari]'` (ale-py ships the game ROMs)."
        ) from None
    gym.register_envs(ale_py)


def batched_game(env_id: str) -> Optional[str]:
    """The ROM name AtariVectorEnv takes for an ``ALE/<Game>-v5`` id (``SpaceInvaders`` ->
    ``space_invaders``); None for ids it does not cover (the v0/v4 and NoFrameskip ids)."""
    match = re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", env_id)
    if match is None:
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", match.group(1)).lower()


def owns_registered_id(env_id: str) -> bool:
    """Is ``env_id`` one of ale-py's plain gymnasium ids (PongNoFrameskip-v4, ...)? They are
    registered when ale-py is imported, so an id gymnasium does not know yet is looked up
    again after that (an ale-py that is not installed owns none)."""
    if env_id not in gym.registry:
        try:
            register()
        except EnvironmentNotAvailable:
            return False
    return is_atari_id(env_id)


def is_atari_id(env_id: str) -> bool:
    if env_id.startswith("ALE/"):
        return True
    spec = gym.registry.get(env_id)
    return spec is not None and "ale_py" in str(spec.entry_point)


class NoopReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Starts each game with a random number (1..noop_max) of no-op frames, so the agent
    does not see the same start every time."""

    def __init__(self, env: gym.Env, noop_max: int):
        gym.utils.RecordConstructorArgs.__init__(self, noop_max=noop_max)
        gym.Wrapper.__init__(self, env)
        self.noop_max = noop_max

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if self.noop_max <= 0:
            return obs, info
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class EpisodicLife(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Signals ``terminated`` when a life is lost, which speeds up value learning, but only
    resets the game when it is really over; otherwise ``reset()`` plays on (one no-op)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = cast("AtariEnv", self.unwrapped).ale.lives()
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over or kwargs.get("seed") is not None:  # a seeded reset starts a new game
            obs, info = self.env.reset(**kwargs)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        self.game_over = False
        self.lives = cast("AtariEnv", self.unwrapped).ale.lives()
        return obs, info


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Presses FIRE after a reset, for games that stand still until it is pressed."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, **kwargs):
        self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(**kwargs)
        return obs, info


def make(env_id: str, render_mode: Optional[str] = None, **options) -> gym.Env:
    check_options("atari", options, DEFAULTS)
    opts = {**DEFAULTS, **options}
    register()
    # render() gives the colour screen whatever obs_type is; gymnasium.make hands any key it
    # gets to the env, so the key is only passed when rendering is asked for.
    render: dict[str, Any] = {} if render_mode is None else {"render_mode": render_mode}
    env = gym.make(
        env_id,
        frameskip=1,
        obs_type="grayscale" if opts["grayscale"] else "rgb",
        repeat_action_probability=opts["repeat_action_probability"],
        full_action_space=opts["full_action_space"],
        max_num_frames_per_episode=opts["max_episode_frames"],
        disable_env_checker=True,
        **render,
    )
    env = NoopReset(env, opts["noop_max"])
    env = MaxAndSkip(env, opts["frame_skip"])
    env = EpisodeStats(env)
    if opts["terminal_on_life_loss"]:
        env = EpisodicLife(env)
    if opts["fire_reset"] and "FIRE" in cast("AtariEnv", env.unwrapped).get_action_meanings():
        env = FireReset(env)
    if opts["downscale"] == "max":
        env = MaxPool2(ResizeFrame(env, 2 * opts["screen_size"]))
    else:
        env = ResizeFrame(env, opts["screen_size"])
    if opts["frame_stack"] > 1:
        env = FrameStack(env, opts["frame_stack"])
    return env
