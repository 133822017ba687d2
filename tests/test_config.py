import pytest

from conftest import assert_clean_error, distrl_here
from distrl.config import load_yaml, parse_override, resolve
from distrl.errors import ConfigError


def test_defaults_and_vector_preset():
    config = resolve({})
    assert config.algo == "ppo" and config.env.id == "CartPole-v1"
    assert config.algo_config.epochs == 20 and config.model.kind == "mlp"  # the "vector" preset


def test_pixel_preset_for_atari_and_user_values_win():
    config = resolve({"env": {"id": "ALE/Pong-v5"}, "ppo": {"clip_coef": 0.3}})
    assert config.model.kind == "cnn"
    assert config.algo_config.reward_clip == 1.0 and config.runtime.fragment_length == 128
    assert config.algo_config.clip_coef == 0.3


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"'ppo.lrr'.*Did you mean 'ppo.lr'"):
        resolve({"ppo": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"'runtime.num_worker'.*'runtime.num_workers'"):
        resolve({"runtime": {"num_worker": 2}})


@pytest.mark.parametrize(
    "user,pattern",
    [
        ({"ppo": {"lr": "fast"}}, r"'ppo.lr' expects float"),
        ({"runtime": {"num_workers": "many"}}, r"'runtime.num_workers' expects int or 'auto'"),
        ({"runtime": {"envs_per_worker": 2.5}}, r"'runtime.envs_per_worker' expects int"),
        ({"ppo": {"gamma": 1.5}}, r"'ppo.gamma' must be in \[0, 1\]"),
        ({"runtime": {"envs_per_worker": 0}}, r"'runtime.envs_per_worker' must be > 0"),
        ({"runtime": {"max_nonfinite_updates": 0}}, r"'runtime.max_nonfinite_updates' must be > 0"),
        ({"model": {"activation": "tahn"}}, r"Did you mean 'tanh'"),
        ({"algo": "ppoo"}, r"Unknown algorithm 'ppoo'. Did you mean 'ppo'"),
    ],
)
def test_wrong_values_are_rejected_with_the_key(user, pattern):
    with pytest.raises(ConfigError, match=pattern):
        resolve(user)


def test_command_line_strings_are_converted():
    key, value = parse_override("ppo.lr=1e-3")
    assert key == "ppo.lr"
    config = resolve({"ppo": {"lr": value}, "runtime": {"num_workers": "4"}, "stop": {"env_steps": "150_000"}})
    assert config.algo_config.lr == pytest.approx(1e-3)
    assert config.runtime.num_workers == 4 and config.stop.env_steps == 150_000
    assert resolve({"runtime": {"num_workers": "auto"}}).runtime.num_workers == "auto"


def test_a_bare_off_in_yaml_or_set_means_the_choice_off(tmp_path):
    key, value = parse_override("output.console=off")  # YAML 1.1 reads this as False
    assert resolve({"output": {"console": value}}).output.console == "off"
    path = tmp_path / "run.yaml"
    path.write_text("output:\n  console: off\n")
    assert resolve(load_yaml(path)).output.console == "off"


def test_resolved_yaml_round_trips(tmp_path):
    config = resolve({"env": {"id": "ALE/Pong-v5"}, "seed": 7})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert resolve(load_yaml(path)) == config


def test_cli_unknown_key_exits_2_without_traceback(tmp_path):
    result = distrl_here("train", "--set", "ppo.clip_cof=0.1", "--out", str(tmp_path / "run"))
    assert_clean_error(result)
    assert "ppo.clip_coef" in result.stderr
    assert not (tmp_path / "run").exists()


def test_cli_bad_yaml_file_and_wrong_type(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ppo:\n  lr: [1, 2\n")
    assert_clean_error(distrl_here("train", "--config", str(bad)))
    assert_clean_error(distrl_here("train", "--num-workers", "two"))
    assert_clean_error(distrl_here("train", "--config", str(tmp_path / "missing.yaml")))


def test_cli_unknown_env_id_exits_2(tmp_path):
    result = distrl_here("train", "--env", "CartPol-v1", "--stop-env-steps", "100", "--out", str(tmp_path / "r"))
    assert_clean_error(result)
    assert "CartPole-v1" in result.stderr


def test_every_shipped_config_resolves():
    """A typo in a shipped config's keys or values fails here, not in a user's first run."""
    from pathlib import Path

    from distrl.envs import check_id
    from distrl.errors import EnvironmentNotAvailable

    configs = sorted((Path(__file__).resolve().parent.parent / "configs").glob("**/*.yaml"))
    assert len(configs) > 20
    needs_a_rom = {"mario_a2c.yaml", "sonic_a3c.yaml"}  # games stable-retro ships without their ROM
    for path in configs:
        config = resolve(load_yaml(path))
        if path.name in needs_a_rom:
            with pytest.raises(EnvironmentNotAvailable, match="stable_retro.import"):
                check_id(config.env.id)
        else:
            check_id(config.env.id)
