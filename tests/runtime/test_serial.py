"""Serial mode (``runtime.mode: serial``, ``distrl train --serial``): the same run in one
process, no Ray. Its runs are compared with Ray runs of the same config, through the command
line, on real envs and real checkpoint files."""

import psutil
import pytest
import torch

from conftest import final_weights, read_progress, run_distrl


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_a_serial_run_ends_at_the_weights_of_the_ray_run(tmp_path, algo):
    """A seeded synchronous run with one worker: in one process and with Ray, the same
    fragments reach the same updates, and the last checkpoints hold the same weights."""
    runs = {}
    for mode in ("ray", "serial"):
        out = tmp_path / mode
        result = run_distrl(
            "train",
            "--algo",
            algo,
            "--env",
            "CartPole-v1",
            "--num-workers",
            "1",
            "--seed",
            "3",
            "--stop-env-steps",
            "3000",
            "--out",
            str(out),
            "--set",
            f"runtime.mode={mode}",
            "output.console=lines",
            *(["ppo.async_sampling=false"] if algo == "ppo" else []),
        )
        assert result.returncode == 0, result.stderr[-3000:]
        runs[mode] = out
    # The serial run started no Ray: it says nothing of Ray's start, and times no Ray start.
    assert "ray start" not in (runs["serial"] / "startup.json").read_text()
    ray_records, serial_records = read_progress(runs["ray"]), read_progress(runs["serial"])
    assert ray_records[-1]["env_steps"] == serial_records[-1]["env_steps"] >= 3000
    assert ray_records[-1]["episodes"] == serial_records[-1]["episodes"] > 0
    ray_weights, serial_weights = final_weights(runs["ray"]), final_weights(runs["serial"])
    assert ray_weights.keys() == serial_weights.keys()
    for name in ray_weights:
        assert torch.equal(ray_weights[name], serial_weights[name]), name


@pytest.mark.slow
def test_serial_mode_trains_cartpole_to_475(tmp_path):
    """`distrl train --serial` with the defaults (PPO, 1 worker x 8 envs sampling during the
    update): the main job, learned in one process, with no Ray process started beside it."""
    before = {p.pid for p in psutil.process_iter() if p.name().startswith(("raylet", "gcs_server"))}
    out = tmp_path / "run"
    result = run_distrl("train", "--serial", "--seed", "1", "--stop-env-steps", "150000", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    last = read_progress(out)[-1]
    assert last["episode_return_mean"] >= 475, last
    assert 0.5 < last["policy_lag_mean"] <= 1  # the next batch was sampled before each update
    assert list((out / "checkpoints").glob("ckpt-*/state.pt")) and list((out / "tb").glob("events.out.tfevents.*"))
    after = {p.pid for p in psutil.process_iter() if p.name().startswith(("raylet", "gcs_server"))}
    assert after <= before
    assert "learner on cpu" in result.stderr + result.stdout


def test_serial_mode_refuses_what_needs_a_cluster(tmp_path):
    result = run_distrl("train", "--serial", "--num-workers", "auto", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "runtime.mode=serial" in result.stderr and "Traceback" not in result.stderr
