"""The tutorials' systems that learn in about a minute on two cores, trained from the configs
docs/results.md ships for them, and judged as that page judges them. The longer rows are
benchmark runs recorded there, not tests. Catch (S9) is one of them: its 30k steps and 100
greedy games took 125 s in the suite, which the 25-minute budget does not hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from distrl.envs.exact import nchain_model, policy_return
from distrl.evaluate import exact_scores
from tests.conftest import run_distrl

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "tutorials"


def train(config: str, out: Path) -> None:
    result = run_distrl("train", "--config", str(CONFIGS / config), "--seed", "1", "--out", str(out),
                        "--set", "output.console=lines", "output.tensorboard=false")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_nchain_table_walks_forward_everywhere(tmp_path):
    """S8: the greedy Q-table, scored exactly, is the best stationary policy (all forward),
    not the myopic one that takes the small reward in state 0."""
    train("nchain_qlearning.yaml", tmp_path / "nchain")
    scores = exact_scores(tmp_path / "nchain")
    P, R = nchain_model()
    assert scores["policy"] == "00000", scores
    assert scores["greedy"] == pytest.approx(policy_return(P, R, np.zeros(5, dtype=int), 1000))
