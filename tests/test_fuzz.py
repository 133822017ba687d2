"""Bad input, fuzzed: random keys, values, types and YAML shapes for the config file and
--set, and random bytes for a checkpoint. Each case is accepted or refused with exit 2 and a
message of a few lines; none may end in a traceback. A fixed seed and example count keep CI
repeatable (hypothesis's derandomize)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distrl import cli
from distrl.config import Config

# Real keys mixed with near misses and nonsense: most cases get past the first check.
SECTIONS = ["algo", "seed", "env", "model", "runtime", "stop", "output", "ppo", "dqn", "a2c", "impala"]
KEYS = SECTIONS + [
    "id", "options", "lr", "num_workers", "envs_per_worker", "env_steps", "reward", "hidden_sizes", "kind",
    "recurrent", "fragment_length", "gamma", "imports", "entry_point", "frame_stack", "report_every_s", "lrr", "",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["ppo", "dqn", "CartPole-v1", "lstm", "auto", "nan", "1e-3", "[1, 2]", "{a: 1}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
documents = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=4),
    values,  # a list or a scalar where a mapping belongs
)
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def run(argv: list[str]) -> tuple[int, str]:
    """``distrl ARGV`` in this process: the exit code and what went to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's own refusals
            code = exit_.code if isinstance(exit_.code, int) else 2
    return code, err.getvalue()


def check(code: int, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert code in (0, 2), (code, stderr)
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip() and "authentication" not in line]
        assert 1 <= len(lines) <= 6, stderr


@FUZZ
@given(document=documents)
def test_config_files_are_accepted_or_refused_cleanly(tmp_path_factory, document):
    path = Path(tmp_path_factory.mktemp("cfg")) / "config.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    check(*run(["train", "--config", str(path), "--print-config"]))


@FUZZ
@given(
    pairs=st.lists(
        st.tuples(
            st.lists(st.sampled_from(KEYS) | st.text(min_size=1, max_size=5), min_size=1, max_size=3),
            st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()), st.text(max_size=10)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_set_overrides_are_accepted_or_refused_cleanly(pairs):
    items = [".".join(path) + "=" + value for path, value in pairs]
    check(*run(["train", "--print-config", "--set", *items]))


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_as_a_checkpoint_are_refused_cleanly(tmp_path_factory, data):
    folder = Path(tmp_path_factory.mktemp("run")) / "checkpoints" / "ckpt-00000001"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(data)
    code, stderr = run(["eval", str(folder.parent.parent), "--episodes", "1"])
    assert code == 2 and "Traceback" not in stderr and "unreadable" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1


def test_the_fuzzer_reaches_real_keys():
    """The key list is not stale: most of it names real config sections or fields."""
    fields = set(Config.__dataclass_fields__)
    assert {"algo", "seed", "env", "model", "runtime", "stop", "output"} <= fields
