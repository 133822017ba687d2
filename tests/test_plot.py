"""`distrl plot` on real runs: seeds of one config become one curve with a band, and the
figure is a real image of the expected size."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from distrl.plot import band, group_runs, read_run
from tests.conftest import assert_clean_error, distrl_here, run_distrl

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_cartpole) -> dict[str, Path]:
    """One real run (the session's PPO CartPole run, conftest.py, its files copied as
    "seed1"), and two runs made from its files: "seed2", its config with another seed and
    returns 20 lower (the same experiment, so a band), and "other", its config with another
    learning rate (another curve). Training three runs would add half a minute to the suite
    and test nothing more of the plotting."""
    import shutil

    import yaml

    root = tmp_path_factory.mktemp("runs")
    seed1 = root / "seed1"
    seed1.mkdir()
    for name in ("config.yaml", "progress.jsonl"):
        shutil.copy(trained_cartpole[0].run_dir / name, seed1 / name)
    folders = {"seed1": seed1}
    config = yaml.safe_load((seed1 / "config.yaml").read_text())
    records = [json.loads(line) for line in (seed1 / "progress.jsonl").read_text().splitlines() if line.strip()]
    for name, change, shift in (("seed2", ("seed", 2), -20.0), ("other", ("ppo.lr", 3e-4), 0.0)):
        out = root / name
        out.mkdir()
        edited = json.loads(json.dumps(config))
        key, value = change
        section = edited
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section[parent]
        section[leaf] = value
        edited["output"]["dir"] = str(out)
        (out / "config.yaml").write_text(yaml.safe_dump(edited))
        lines = []
        for record in records:
            if record.get("episode_return_mean") is not None:
                record = {**record, "episode_return_mean": record["episode_return_mean"] + shift}
            lines.append(json.dumps(record))
        (out / "progress.jsonl").write_text("\n".join(lines) + "\n")
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


def plot_here(*args: str) -> subprocess.CompletedProcess:
    """``distrl plot ARGS`` in this process (the first figure of
    test_plot_writes_a_figure_of_the_runs goes through a real process)."""
    return distrl_here("plot", *args)


def test_plot_writes_a_figure_of_the_runs(runs, tmp_path):
    both = tmp_path / "both.png"
    result = run_distrl("plot", str(runs["seed1"]), str(runs["seed2"]), str(runs["other"]), "-o", str(both),
                        "--target", "475", "--title", "CartPole", "--baseline", "random=22.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "mean of 2" in result.stdout and f"wrote {both}" in result.stdout
    one = tmp_path / "one.png"
    assert plot_here(str(runs["other"]), "-o", str(one)).returncode == 0
    images = [np.asarray(Image.open(path).convert("RGB")) for path in (both, one)]
    for image in images:
        assert image.shape == (440, 1210, 3)  # 11 x 4 inches at 110 dpi
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # lines, text, a band: not blank
    assert not np.array_equal(images[0], images[1])


def test_bad_input_is_a_clean_error(runs, tmp_path):
    assert_clean_error(plot_here(str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")))
    assert_clean_error(plot_here(str(runs["seed1"]), "-o", str(tmp_path / "x.jpg")))
    assert_clean_error(
        plot_here(str(runs["seed1"]), str(runs["other"]), "--labels", "one", "-o", str(tmp_path / "x.png"))
    )
    assert_clean_error(plot_here(str(runs["seed1"]), "--baseline", "random", "-o", str(tmp_path / "x.png")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "progress.jsonl").write_text(
        json.dumps({"time_s": 1.0, "env_steps": 10, "episode_return_mean": None}) + "\n"
    )
    assert_clean_error(plot_here(str(empty), "-o", str(tmp_path / "x.png")))
