"""Option validation lives in the config dataclasses; every bad value names itself and the fix."""

import json

import pytest

from tqstar.config import AUTHORS_SETTINGS, DecodeConfig, load_config_file, split_options
from tqstar.errors import ConfigError


@pytest.mark.parametrize("options, message", [
    ({"top_k": 0}, "top_k must be ≥ 1"),
    ({"alpha": -0.1}, "alpha must be ≥ 0"),
    ({"num_rollouts": 0}, "num_rollouts must be ≥ 1"),
    ({"horizon": -1}, "horizon must be ≥ 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be ≥ 1"),
    ({"beta": 0}, "beta must be > 0"),
    ({"selection_temperature": 0}, "selection_temperature must be > 0"),
    ({"rollout_temperature": -1}, "rollout_temperature must be ≥ 0"),
    ({"method": "magic"}, "Unknown method 'magic'"),
    ({"selection": "beam"}, "Unknown selection"),
    ({"proposal": "judge"}, "Unknown proposal"),
    ({"num_rollouts": 4, "rollout_temperature": 0.0}, "repeats one rollout"),
    ({"top_k": "ten"}, "top_k must be a number"),
    ({"compat": True, "method": "args"}, "compat reproduces"),
])
def test_out_of_range_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DecodeConfig(**options)


def test_defaults_follow_the_paper():
    config = DecodeConfig()
    assert (config.top_k, config.alpha, config.selection, config.method) == (10, 1.0, "greedy", "tq-direct")


@pytest.mark.parametrize("method, horizon", [("tq-direct", 20), ("tq-indirect", 5)])
def test_compat_switch_sets_the_authors_released_behaviour(method, horizon):
    config = DecodeConfig(method=method, compat=True, top_k=3, num_rollouts=1)
    assert config.horizon == horizon
    assert {k: getattr(config, k) for k in AUTHORS_SETTINGS} == AUTHORS_SETTINGS


def test_config_file_and_unknown_keys(tmp_path):
    path = tmp_path / "options.json"
    path.write_text(json.dumps({"top_k": 4, "reward": "sentiment"}))
    decode, roles = split_options(load_config_file(path))
    assert decode.top_k == 4 and roles.reward == "sentiment"
    with pytest.raises(ConfigError, match="Unknown option"):
        split_options({"topk": 4})


def test_toml_config_file(tmp_path):
    path = tmp_path / "options.toml"
    path.write_text('method = "args"\nalpha = 2.5\n')
    decode, _ = split_options(load_config_file(path))
    assert (decode.method, decode.alpha) == ("args", 2.5)


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("{not json", "not valid")])
def test_bad_config_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)
