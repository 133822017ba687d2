"""Playing whole episodes with a checkpoint's policy, in this process (no Ray needed)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
import yaml
from gymnasium.wrappers import RecordVideo

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import resolve
from distrl.envs import custom, family_of, frames_per_step, make_env
from distrl.errors import VideoError
from distrl.models import build_model
from distrl.policy import Policy, config_of, eval_options

VIDEO_SUFFIXES = (".mp4", ".gif")
# An env whose metadata names no speed (Catch) plays a few moves a second, slow enough to follow.
DEFAULT_VIDEO_FPS = 10
# Frames smaller than this on their short side (Catch draws one pixel per cell) are scaled up;
# the games (Doom 160x120 and up) are recorded at their own size.
MIN_VIDEO_SIDE = 100


def evaluate(
    path: str | Path,
    episodes: int,
    greedy: bool = False,
    seed: int = 12345,
    video: Optional[str | Path] = None,
    env_options: Optional[dict[str, Any]] = None,
) -> tuple[list[float], Path]:
    """Returns the game score of each of ``episodes`` episodes, and the checkpoint used.

    Evaluation plays whole games: training-only shortcuts (life loss as terminal) are off,
    and the score is the raw reward, not the clipped one the learner sees.

    ``video`` (an .mp4 or .gif path) records all the episodes, one after the other, into
    that one file, as a person would see them: the env's colour render (not the agent's
    84x84 input), one frame per agent step, played at the game's own speed (emulator frames
    per second over the frame skip). gymnasium's RecordVideo cuts the episodes and captures
    the frames. The policy sees the same observations as without ``video``, so the scores
    do not change.

    ``env_options`` replace the run's env options, so a policy trained on one part of the
    data can be judged on another (MarketMaking's ``split="test"``) or on another map.
    """
    video = Path(video) if video is not None else None
    staging = _staging_folder(video) if video is not None else None
    try:
        folder, state = checkpoint.load(path)
        config = config_of(state)
        custom.prepare(config.env)
        options = eval_options(config, env_options)
        env = make_env(config.env.id, seed=seed, render_mode=None if staging is None else "rgb_array", **options)
        sink: Optional[_VideoFile] = None
        try:
            policy = Policy.from_state(folder, state, config, env.observation_space, env.action_space)
            torch.manual_seed(seed)
            if staging is not None and video is not None:
                sink = _VideoFile(staging / f"video{video.suffix.lower()}", _video_fps(env, config.env.id, options))
                env = _OneVideo(_Watchable(env), staging / "unused", sink)
            returns = _play(env, policy, episodes, greedy)
        finally:
            try:
                env.close()  # the last episode's frames are written here
            finally:
                if sink is not None:
                    sink.close()
        if sink is not None and video is not None:
            if not sink.path.is_file():
                raise VideoError(f"No frames were recorded for {str(video)!r}: {config.env.id} rendered nothing.")
            os.replace(sink.path, video)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return returns, folder


def exact_scores(path: str | Path) -> dict[str, Any]:
    """The greedy policy of a run on a tabular system (NChain, FrozenLake: one-hot states),
    scored by dynamic programming instead of by played episodes: its expected return per
    episode, the optimum's, and the policy itself as a string of actions by state."""
    from distrl.envs.exact import nchain_model, optimal_return, policy_return, toy_text_model

    _, state = checkpoint.load(path)
    config = resolve(yaml.safe_load(state["config_yaml"]) or {})
    custom.prepare(config.env)
    env = make_env(config.env.id, **config.env.options)
    model = build_model(config.model, env.observation_space, env.action_space, ALGORITHMS[config.algo].model_head)
    model.load_state_dict(state["model"])
    if config.env.id == "distrl/NChain-v0":
        P, R = nchain_model(
            **{k: config.env.options[k] for k in ("n", "slip", "small", "large") if k in config.env.options}
        )
    else:
        P, R = toy_text_model(gym.make(config.env.id, **config.env.options))
    states = int(np.prod(env.observation_space.shape or (0,)))
    with torch.no_grad():
        greedy = model.act(torch.eye(states), greedy=True)["actions"].numpy().astype(int)
    policy = np.zeros(P.shape[0], dtype=int)  # the absorbing state, if any, acts arbitrarily
    policy[:states] = greedy
    horizon = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
    env.close()
    return {
        "greedy": policy_return(P, R, policy, horizon),
        "optimum": optimal_return(P, R, horizon),
        "policy": "".join(map(str, greedy)),
    }


def _play(env: gym.Env, policy: Policy, episodes: int, greedy: bool) -> list[float]:
    """Stops right at the end of the last episode: one more reset would start recording an
    episode nobody asked for."""
    returns: list[float] = []
    obs, _ = env.reset()
    # A recurrent policy carries its state from step to step; None starts each episode afresh.
    memory = None
    while True:
        if policy.recurrent:
            action, memory = policy.act(obs, memory, greedy=greedy)
        else:
            action = policy.act(obs, greedy=greedy)
        obs, _, terminated, truncated, info = env.step(action)
        if "episode_return" in info:
            returns.append(float(info["episode_return"]))
            if len(returns) == episodes:
                return returns
        if terminated or truncated:
            obs, _ = env.reset()
            memory = None


def _staging_folder(video: Path) -> Path:
    """Checks the request before any episode is played, and makes the folder the video is
    written in. It lies next to ``video``, so the finished file is renamed into place: an
    interrupted run never leaves half a video under the user's name."""
    suffix = video.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise VideoError(
            f"--video writes an .mp4 video (or an animated .gif); {str(video)!r} ends in "
            f"{suffix or 'no suffix'!r}. Name the file like eval.mp4 or eval.gif."
        )
    if video.is_dir():
        raise VideoError(f"--video {str(video)!r} is a folder; give a file name such as {str(video / 'eval.mp4')!r}.")
    try:
        import moviepy  # noqa: F401  (RecordVideo asks for it; it brings ffmpeg and imageio)
    except ImportError:
        raise VideoError(
            "Recording a video needs moviepy, which is not installed. Install it with "
            "`pip install 'distrl[video]'` and run again."
        ) from None
    try:
        video.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".distrl-video-", dir=video.parent))
    except OSError as error:
        raise VideoError(
            f"Cannot write the video to {str(video)!r}: {error.strerror or error}. Choose a folder you can write to."
        ) from None


def _video_fps(env: gym.Env, env_id: str, options: dict[str, Any]) -> float:
    """The game's own speed in agent steps per second: one frame is recorded per step."""
    metadata = env.metadata
    native = (
        family_of(env_id).frames_per_second
        or metadata.get("render_fps")
        or metadata.get("video.frames_per_second")  # stable-retro's key
    )
    if not native:
        return DEFAULT_VIDEO_FPS
    return round(float(native) / frames_per_step(env_id, options), 2)


class _Watchable(gym.Wrapper):
    """Rendered frames as a video player shows them well: a tiny grid scaled up with sharp
    pixels, and an even width and height (H.264 stores odd sizes in a format many players
    refuse)."""

    def render(self):
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            return frame
        scale = math.ceil(MIN_VIDEO_SIDE / min(frame.shape[:2]))
        if scale > 1:
            frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))
        return frame


class _VideoFile:
    """Frames in, one file out, frame for frame: H.264 .mp4 through moviepy's ffmpeg writer,
    or an animated .gif through imageio's pillow plugin (moviepy's own GIF route)."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.fps = fps
        self._writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            if self.path.suffix == ".gif":
                import imageio.v3 as iio

                self._writer = iio.imopen(str(self.path), "w", plugin="pillow")
            else:
                from moviepy.video.io.ffmpeg_writer import FFMPEG_VideoWriter

                self._writer = FFMPEG_VideoWriter(str(self.path), (frame.shape[1], frame.shape[0]), self.fps)
        if self.path.suffix == ".gif":
            self._writer.write(frame, duration=1000 / self.fps, loop=0)  # milliseconds
        else:
            self._writer.write_frame(frame)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _OneVideo(RecordVideo):
    """gymnasium's RecordVideo cuts the episodes and captures their frames; here every frame
    goes on into one open file as soon as it is drawn. RecordVideo's own writer keeps a whole
    episode in memory (Pong at full length: gigabytes) and passes it through moviepy's
    ImageSequenceClip, which in moviepy 2.2 repeats and drops frames (frame times rounded as
    floats: moviepy issues #2412 and #2507), often the last one, which shows how it ended."""

    def __init__(self, env: gym.Env, folder: Path, sink: _VideoFile):
        # RecordVideo makes ``folder`` (and warns if it exists) though nothing is written there.
        super().__init__(env, str(folder), episode_trigger=lambda episode: True, disable_logger=True)
        self.sink = sink

    def reset(self, **kwargs):
        result = super().reset(**kwargs)
        self._flush()
        return result

    def step(self, action):
        result = super().step(action)
        self._flush()
        return result

    def stop_recording(self):
        self._flush()
        self.recording = False
        self._video_name = None

    def _flush(self) -> None:
        for frame in self.recorded_frames:
            self.sink.write(np.asarray(frame))  # RecordVideo keeps only numpy frames
        self.recorded_frames = []
