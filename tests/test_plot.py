"""`distrl plot` on real runs: seeds of one config become one curve with a band, and the
figure is a real image of the expected size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distrl.plot import band, group_runs, read_run
from tests.conftest import assert_clean_error, run_distrl

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two seeds of one config and a third run with another learning rate, 6k steps each."""
    root = tmp_path_factory.mktemp("runs")
    folders = {}
    for name, extra in (("seed1", ["--seed", "1"]), ("seed2", ["--seed", "2"]), ("other", ["--set", "ppo.lr=3e-4"])):
        out = root / name
        result = run_distrl(
            "train", "--env", "CartPole-v1", "--num-workers", "1", "--stop-env-steps", "6000",
            "--out", str(out), *extra, "--set", "output.console=lines", "output.tensorboard=false",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        folders[name] = out
    return folders


def test_seeds_of_one_config_are_one_curve(runs):
    groups = group_runs([read_run(runs[name]) for name in ("seed1", "other", "seed2")])
    assert [[run.path.name for run in group] for group in groups] == [["seed1", "seed2"], ["other"]]
    assert groups[0][0].title == "ppo on CartPole-v1"


def test_band_matches_a_point_by_point_reference():
    """Against the obvious loop: linear interpolation between a run's reports, its first
    value before them and its last value after them."""
    rng = np.random.default_rng(0)
    xs = [np.sort(rng.uniform(0, 100, n)) for n in (7, 12, 4)]
    ys = [rng.normal(size=len(x)) for x in xs]
    grid, mean, low, high = band(xs, ys)
    for i, g in enumerate(grid):
        values = []
        for x, y in zip(xs, ys):
            if g <= x[0]:
                values.append(y[0])
            elif g >= x[-1]:
                values.append(y[-1])
            else:
                j = int(np.searchsorted(x, g)) - 1
                values.append(y[j] + (y[j + 1] - y[j]) * (g - x[j]) / (x[j + 1] - x[j]))
        assert mean[i] == pytest.approx(np.mean(values))
        assert low[i] == pytest.approx(min(values)) and high[i] == pytest.approx(max(values))


def test_plot_writes_a_figure_of_the_runs(runs, tmp_path):
    both = tmp_path / "both.png"
    result = run_distrl("plot", str(runs["seed1"]), str(runs["seed2"]), str(runs["other"]), "-o", str(both),
                        "--target", "475", "--title", "CartPole", "--baseline", "random=22.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mean of 2" in result.stdout and f"wrote {both}" in result.stdout
    one = tmp_path / "one.png"
    assert run_distrl("plot", str(runs["other"]), "-o", str(one)).returncode == 0
    images = [np.asarray(Image.open(path).convert("RGB")) for path in (both, one)]
    for image in images:
        assert image.shape == (440, 1210, 3)  # 11 x 4 inches at 110 dpi
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # lines, text, a band: not blank
    assert not np.array_equal(images[0], images[1])


def test_bad_input_is_a_clean_error(runs, tmp_path):
    assert_clean_error(run_distrl("plot", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")))
    assert_clean_error(run_distrl("plot", str(runs["seed1"]), "-o", str(tmp_path / "x.jpg")))
    assert_clean_error(
        run_distrl("plot", str(runs["seed1"]), str(runs["other"]), "--labels", "one", "-o", str(tmp_path / "x.png"))
    )
    assert_clean_error(run_distrl("plot", str(runs["seed1"]), "--baseline", "random", "-o", str(tmp_path / "x.png")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "progress.jsonl").write_text(
        json.dumps({"time_s": 1.0, "env_steps": 10, "episode_return_mean": None}) + "\n"
    )
    assert_clean_error(run_distrl("plot", str(empty), "-o", str(tmp_path / "x.png")))
