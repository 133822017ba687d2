"""`distrl eval --video`: real episodes of each pixel family recorded through gymnasium's
RecordVideo and read back with OpenCV, as a person's video player would read them."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.cli import main
from distrl.config import resolve
from distrl.envs import make_env
from distrl.evaluate import evaluate
from distrl.models import build_model


def untrained_checkpoint(folder: Path, env_id: str, **options) -> Path:
    """A checkpoint of a fresh PPO model: eval plays it like a trained one, in seconds."""
    config = resolve({"algo": "ppo", "env": {"id": env_id, "options": options}})
    env = make_env(env_id, seed=0, **config.env.options)
    model = build_model(config.model, env.observation_space, env.action_space, ALGORITHMS["ppo"].model_head)
    env.close()
    return checkpoint.save(folder / "checkpoints", 0, {"model": model.state_dict()}, config.to_yaml(), keep=1)


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """The frames (BGR) and the frame rate a player would use."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def record(
    tmp_path: Path, capsys, env_id: str, name: str, episodes: int = 1, **options
) -> tuple[list[np.ndarray], float]:
    pytest.importorskip("moviepy")
    ckpt = untrained_checkpoint(tmp_path / "run", env_id, **options)
    video = tmp_path / "videos" / name  # a folder that does not exist yet
    code = main(["eval", str(ckpt), "--episodes", str(episodes), "--video", str(video)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"video: {video.resolve()}" in out
    assert [p.name for p in video.parent.iterdir()] == [name]  # the staging folder is gone
    frames, fps = read_video(video)
    assert frames, f"{video} holds no readable frames"
    return frames, fps


def assert_moving_picture(frames: list[np.ndarray], width: int, height: int, at_least: int) -> None:
    assert frames[0].shape == (height, width, 3)
    assert len(frames) >= at_least
    # Beyond compression noise, something moved on the screen.
    assert max(int(np.abs(f.astype(int) - frames[0]).max()) for f in frames) > 60


def test_catch_video_is_scaled_up_from_its_10x10_grid(tmp_path, capsys):
    frames, fps = record(tmp_path, capsys, "distrl/Catch-v0", "catch.mp4")
    # One grid cell becomes 10x10 pixels. Every frame is there: the first screen and 9 steps,
    # the last one showing the catch or the miss.
    assert_moving_picture(frames, 100, 100, at_least=10)
    assert len(frames) == 10 and fps == 10


def test_several_episodes_are_joined_in_one_file_and_a_gif_works(tmp_path, capsys):
    mp4, _ = record(tmp_path / "mp4", capsys, "distrl/Catch-v0", "three.mp4", episodes=3)
    assert len(mp4) == 30
    gif, _ = record(tmp_path / "gif", capsys, "distrl/Catch-v0", "two.gif", episodes=2)
    # A GIF stores a frame that repeats the one before as a longer pause, so count loosely.
    assert_moving_picture(gif, 100, 100, at_least=10)


def test_recording_does_not_change_what_the_agent_sees(tmp_path):
    pytest.importorskip("moviepy")
    ckpt = untrained_checkpoint(tmp_path / "run", "distrl/Catch-v0")
    plain, _ = evaluate(ckpt, 8, seed=3)
    recorded, _ = evaluate(ckpt, 8, seed=3, video=tmp_path / "catch.mp4")
    assert recorded == plain and len(read_video(tmp_path / "catch.mp4")[0]) == 80


def test_pong_video_is_the_colour_screen(tmp_path, capsys):
    pytest.importorskip("ale_py")
    # 400 emulator frames (about 100 agent steps) keep the episode short.
    frames, fps = record(tmp_path, capsys, "ALE/Pong-v5", "pong.mp4", max_episode_frames=400)
    assert_moving_picture(frames, 160, 210, at_least=50)
    assert fps == 15  # the 2600's 60 frames a second over frame skip 4: the game's own speed
    b, g, r = (frames[len(frames) // 2][..., c].astype(int) for c in range(3))
    assert np.abs(r - g).max() > 30 or np.abs(g - b).max() > 30  # colour, not the agent's gray input


def test_doom_video_is_the_rendered_screen(tmp_path, capsys):
    pytest.importorskip("vizdoom")
    # An agent that cannot shoot plays VizdoomBasic to its time limit, 300 tics: 75 agent
    # steps at frame skip 4. The agent sees gray, and so does the video.
    actions = [["MOVE_LEFT"], ["MOVE_RIGHT"]]
    frames, fps = record(tmp_path, capsys, "VizdoomBasic-v1", "doom.mp4", actions=actions)
    assert_moving_picture(frames, 160, 120, at_least=70)
    assert fps == 8.75  # 35 tics a second over frame skip 4


def test_retro_video_comes_from_the_emulator_process(tmp_path, capsys):
    pytest.importorskip("stable_retro")
    frames, fps = record(tmp_path, capsys, "retro/Airstriker-Genesis-v0", "airstriker.mp4", max_episode_steps=60)
    assert_moving_picture(frames, 320, 224, at_least=60)
    assert len(frames) == 61 and fps == 15


def test_an_unknown_video_format_is_a_clean_error(tmp_path, capsys):
    ckpt = untrained_checkpoint(tmp_path / "run", "distrl/Catch-v0")
    code = main(["eval", str(ckpt), "--episodes", "1", "--video", str(tmp_path / "out.avi")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("distrl: error: --video writes an .mp4") and "'.avi'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.avi").exists()


def test_an_env_that_draws_nothing_is_a_clean_error(tmp_path, capsys):
    pytest.importorskip("moviepy")
    ckpt = untrained_checkpoint(tmp_path / "run", "distrl/NChain-v0")
    code = main(["eval", str(ckpt), "--episodes", "1", "--video", str(tmp_path / "chain.mp4")])
    err = capsys.readouterr().err
    assert code == 2
    assert "draws no pictures" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]  # no video, no staging folder left


def test_missing_moviepy_names_the_extra_to_install(tmp_path, capsys, monkeypatch):
    ckpt = untrained_checkpoint(tmp_path / "run", "distrl/Catch-v0")
    monkeypatch.setitem(sys.modules, "moviepy", None)  # `import moviepy` fails as if it were not installed
    code = main(["eval", str(ckpt), "--episodes", "1", "--video", str(tmp_path / "out.mp4")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'distrl[video]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [tmp_path / "run"]
