"""K environment copies stepped as one batch: what a rollout worker drives.

Two implementations behind one small interface (``reset``, ``step``, ``close``):

- ``EnvLoop``: one ``make_env`` env per copy, stepped in a Python loop. Works for every
  family and every option.
- ``AtariBatch``: ale-py's ``AtariVectorEnv``, whose C++ side does frame skip, max-pooling,
  resizing, stacking, no-op starts and fire resets for all copies in one call. It replaces
  distrl's Python wrappers (``envs/atari.py``) for ``ALE/<Game>-v5`` ids with the same
  preprocessing; ``docs/design.md`` lists where the two differ.

Both reset an env copy in the same step that ended its episode: the returned observation is
the new episode's first, and an episode cut by a time limit hands its last observation over
in ``final_obs`` (a time limit is not a terminal state; the learner bootstraps from it). Both
report each finished game's score and length, so returns stay game scores when a lost life
ends an episode for learning, and the env's own numbers about it (``info["episode_metrics"]``
at its last step, ``envs/wrappers.episode_metrics_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from distrl.envs import atari, family_of, make_env
from distrl.envs.wrappers import check_options, episode_metrics_of, max_pool2


@dataclass
class VectorStep:
    obs: np.ndarray  # [K, ...]: the next observations (a new episode's first where one ended)
    rewards: np.ndarray  # [K] float32
    terminated: np.ndarray  # [K] bool
    truncated: np.ndarray  # [K] bool
    final_obs: dict[int, np.ndarray] = field(default_factory=dict)  # copy -> last obs before a time limit
    episode_returns: list[float] = field(default_factory=list)  # games that ended in this step
    episode_lengths: list[int] = field(default_factory=list)
    # One per game in episode_returns: the env's own numbers about it (info["episode_metrics"]).
    episode_metrics: list[dict[str, float]] = field(default_factory=list)
    env_restarts: int = 0  # copies that failed in this step and were built again


class EnvLoop:
    """``make_env`` copies stepped one after the other.

    A copy whose ``step`` or ``reset`` raises (a bug in a user's env, an emulator process
    that crashed) is closed and built again with a new seed, and the worker carries on: its
    episode is cut where it failed, as a time limit would cut it (``truncated``, bootstrapped
    from the last observation it gave), is not reported as a finished game, and
    ``env_restarts`` counts it. A copy that fails ``MAX_FAILURES_IN_A_ROW`` times without one
    good step in between raises: that is no accident but an env that cannot run, and the
    worker's own failure handling takes over."""

    MAX_FAILURES_IN_A_ROW = 3

    def __init__(self, env_id: str, num_envs: int, seed: int, options: dict[str, Any]):
        self.env_id, self.seed, self.options = env_id, seed, options
        self.envs = [make_env(env_id, seed=seed + k, **options) for k in range(num_envs)]
        self.num_envs = num_envs
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._obs: Optional[np.ndarray] = None
        self.restarts = 0
        self._failures = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self._obs = np.stack([self._reset(k) for k in range(self.num_envs)]).astype(self.observation_space.dtype)
        return self._obs.copy()

    def _reset(self, k: int) -> np.ndarray:
        try:
            return self.envs[k].reset()[0]
        except Exception as error:
            return self._rebuild(k, error)

    def _rebuild(self, k: int, error: Exception) -> np.ndarray:
        """Close copy ``k`` after ``error`` and build it again; returns its first observation."""
        self._failures[k] += 1
        if self._failures[k] >= self.MAX_FAILURES_IN_A_ROW:
            raise error
        try:
            self.envs[k].close()
        except Exception:
            pass  # a crashed emulator has nothing left to close
        self.restarts += 1
        # A new seed: the same one would replay the episode that failed.
        self.envs[k] = make_env(self.env_id, seed=self.seed + k + 1_000_003 * self.restarts, **self.options)
        return self._reset(k)

    def step(self, actions: np.ndarray) -> VectorStep:
        assert self._obs is not None, "reset() first"
        K = self.num_envs
        out = VectorStep(
            obs=self._obs,
            rewards=np.zeros(K, dtype=np.float32),
            terminated=np.zeros(K, dtype=bool),
            truncated=np.zeros(K, dtype=bool),
        )
        restarts_before = self.restarts
        for k, env in enumerate(self.envs):
            # One Discrete action as a Python int; a vector action (Box, MultiDiscrete, MultiBinary) as its row.
            action = actions[k].item() if actions.ndim == 1 else actions[k]
            try:
                obs, reward, terminated, truncated, info = env.step(action)
            except Exception as error:
                out.truncated[k] = True
                out.final_obs[k] = self._obs[k].copy()
                self._obs[k] = self._rebuild(k, error)
                continue
            self._failures[k] = 0
            out.rewards[k] = reward
            out.terminated[k] = terminated
            out.truncated[k] = truncated
            if terminated or truncated:
                if "episode_return" in info:
                    out.episode_returns.append(info["episode_return"])
                    out.episode_lengths.append(info["episode_length"])
                    out.episode_metrics.append(episode_metrics_of(info, repr(self.env_id)))
                if truncated and not terminated:
                    out.final_obs[k] = obs
                obs = self._reset(k)
            self._obs[k] = obs
        out.env_restarts = self.restarts - restarts_before
        out.obs = self._obs.copy()
        return out

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


class AtariBatch:
    """ale-py's AtariVectorEnv with distrl's Atari options.

    Episode bookkeeping: with ``terminal_on_life_loss`` a lost life reports ``terminated``
    while the game plays on; a game over resets the copy in the same step. A reset shows as
    the copy's frame counter going back, which is how a game over is told from a lost life.

    The frames are stacked here, not by ale-py: its stack starts an episode with zero frames
    and runs on across a lost life, while replay (``runtime/replay.py``) rebuilds a stack by
    repeating an episode's first frame, as ``EnvLoop``'s ``FrameStack`` fills it. One rule on
    every path means the Q-network is trained on the stacks the actor acted on.
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, options: dict[str, Any], num_threads: int = 1):
        from ale_py.vector_env import AtariVectorEnv

        check_options("atari", options, atari.DEFAULTS)
        opts = {**atari.DEFAULTS, **options}
        game = atari.batched_game(env_id)
        assert game is not None, f"{env_id} is not an ALE/<Game>-v5 id"
        # downscale=max: ale-py resizes to twice the size, and the brightest of each 2x2 block
        # is kept here, as atari.make's MaxPool2 does on the single-env path.
        self._pool = opts["downscale"] == "max"
        size = opts["screen_size"] * (2 if self._pool else 1)
        self.env = AtariVectorEnv(
            game,
            num_envs,
            num_threads=num_threads,
            autoreset_mode="SameStep",
            frameskip=opts["frame_skip"],
            noop_max=opts["noop_max"],
            img_height=size,
            img_width=size,
            grayscale=opts["grayscale"],
            stack_num=1,
            maxpool=True,
            episodic_life=False,
            life_loss_info=opts["terminal_on_life_loss"],
            use_fire_reset=opts["fire_reset"],
            reward_clipping=False,  # the learner clips; reported returns stay game scores
            repeat_action_probability=opts["repeat_action_probability"],
            full_action_space=opts["full_action_space"],
            max_num_frames_per_episode=opts["max_episode_frames"],
        )
        self.num_envs = num_envs
        self.seed = seed
        frame = self.env.single_observation_space  # [1, H, W] (gray) or [1, H, W, 3]
        assert isinstance(frame, gym.spaces.Box)
        if self._pool:
            frame = gym.spaces.Box(0, 255, self._frames(frame.low).shape, np.uint8)
        depth = opts["frame_stack"]
        self.observation_space = gym.spaces.Box(
            np.repeat(frame.low, depth, axis=0), np.repeat(frame.high, depth, axis=0), dtype=np.uint8
        )
        self.action_space = self.env.single_action_space
        self._stack = np.zeros((num_envs, *self.observation_space.shape), dtype=frame.dtype)
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._frame = np.zeros(num_envs, dtype=np.int64)

    def _frames(self, frames: np.ndarray) -> np.ndarray:
        """ale-py's frames at the size asked for: [..., 1, H, W] or [..., 1, H, W, 3]."""
        if not self._pool:
            return frames
        if frames.shape[-1] == 3:  # colour: pool the two axes before the channel
            return np.moveaxis(max_pool2(np.moveaxis(frames, -1, -3)), -3, -1)
        return max_pool2(frames)

    def reset(self) -> np.ndarray:
        obs, info = self.env.reset(seed=self.seed)
        obs = self._frames(obs)
        self._returns[:] = 0
        self._lengths[:] = 0
        self._frame[:] = info["episode_frame_number"]
        self._stack[:] = obs  # [K, 1, ...] broadcast: every slot holds the first frame
        return self._stack.copy()

    def step(self, actions: np.ndarray) -> VectorStep:
        frames, rewards, terminated, truncated, info = self.env.step(actions.astype(np.int64, copy=False))
        frames = self._frames(frames)
        out = VectorStep(
            obs=self._stack,
            rewards=rewards.astype(np.float32),
            terminated=terminated.astype(bool, copy=False),
            truncated=truncated.astype(bool, copy=False),
        )
        self._returns += rewards
        self._lengths += 1
        frame = info["episode_frame_number"].astype(np.int64)
        if out.terminated.any() or out.truncated.any():
            game_over = (out.terminated | out.truncated) & (frame < self._frame)
            for k in np.flatnonzero(game_over):
                out.episode_returns.append(float(self._returns[k]))
                out.episode_lengths.append(int(self._lengths[k]))
                out.episode_metrics.append({})  # ale-py reports no numbers of its own about a game
                self._returns[k] = 0
                self._lengths[k] = 0
            for k in np.flatnonzero(out.truncated & ~out.terminated):
                out.final_obs[int(k)] = np.concatenate([self._stack[k, 1:], self._frames(info["final_obs"][k])])
        self._stack[:, :-1] = self._stack[:, 1:]
        self._stack[:, -1:] = frames
        # A new episode for learning (a lost life included) starts from its first frame alone.
        for k in np.flatnonzero(out.terminated | out.truncated):
            self._stack[k] = frames[k]
        self._frame = frame
        out.obs = self._stack.copy()
        return out

    def close(self) -> None:
        self.env.close()


VectorEnv = EnvLoop | AtariBatch


def make_vector_env(
    env_id: str, num_envs: int, seed: int, options: dict[str, Any], vectorize: str = "auto", num_threads: int = 1
) -> VectorEnv:
    """``num_envs`` copies of ``env_id``. ``vectorize``: ``auto`` takes the family's native
    batched env when there is one for this id, ``native`` insists on it, ``loop`` never uses it."""
    family = family_of(env_id)
    native = family.native_batch(env_id)
    if vectorize == "native" and not native:
        from distrl.errors import ConfigError

        raise ConfigError(
            f"env.vectorize=native: {env_id!r} has no native batched environment (ale-py's AtariVectorEnv "
            f"covers ALE/<Game>-v5 ids). Use env.vectorize=auto or loop."
        )
    if native and vectorize != "loop":
        family.register()
        return AtariBatch(env_id, num_envs, seed, options, num_threads=num_threads)
    return EnvLoop(env_id, num_envs, seed, options)


__all__ = ["AtariBatch", "EnvLoop", "VectorEnv", "VectorStep", "make_vector_env"]
