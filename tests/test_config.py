"""Option validation lives in the config dataclasses; every bad value names itself and the fix."""

import json

import pytest

from tqstar.decoding import AUTHORS_SETTINGS, DecodeConfig, split_options
from tqstar.decoding import rollouts
from tqstar.decoding.config import SIZE_BOUNDS
from tqstar.options import load_config_file
from tqstar.errors import ConfigError


@pytest.mark.parametrize("options, message", [
    ({"top_k": 0}, "top_k must be ≥ 1"),
    ({"alpha": -0.1}, "alpha must be ≥ 0"),
    ({"num_rollouts": 0}, "num_rollouts must be ≥ 1"),
    ({"horizon": -1}, "horizon must be ≥ 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be ≥ 1"),
    ({"beta": 0}, "beta must be ≥ 0.001"),
    ({"beta": 5e-324}, "beta must be ≥ 0.001"),
    ({"selection_temperature": 0}, "selection_temperature must be ≥ 0.01"),
    ({"selection_temperature": 1e-300}, "selection_temperature must be ≥ 0.01"),
    ({"rollout_temperature": -1}, r"rollout_temperature must be 0 \(greedy\) or ≥ 0.01"),
    ({"rollout_temperature": 1e-300}, r"rollout_temperature must be 0 \(greedy\) or ≥ 0.01"),
    ({"alpha": 1e300}, r"alpha must be ≤ 10000.0 \(α·Q̂ overflows beyond it\)"),
    ({"method": "magic"}, "Unknown method 'magic'"),
    ({"selection": "beam"}, "Unknown selection"),
    ({"proposal": "judge"}, "Unknown proposal"),
    ({"num_rollouts": 4, "rollout_temperature": 0.0}, "repeats one rollout"),
    ({"top_k": "ten"}, "top_k must be a number"),
    ({"compat": True, "method": "args"}, "compat reproduces"),
    ({"block_size": 0}, r"block_size must be ≥ 1, got 0\. Set block_size to 1 or more"),
    ({"block_size": 10**6}, r"block_size must be ≤ 64 \(a longer block is most of a response; compare whole "
                            r"responses with best-of-n\), got 1000000\. Set block_size to 64 or less"),
    ({"block_size": 2.5}, r"block_size must be a whole number, got 2\.5\. Pass e\.g\. 2"),
    ({"block_size": "four"}, "block_size must be a number, got 'four'"),
    ({"compat": True, "block_size": 4}, r"block_size=4 \(compat: 1\)"),
    ({"prune": True, "selection": "sample"}, "selection='sample' draws from every candidate"),
    ({"prune": True, "block_size": 4}, "with --block-size it is not implemented"),
])
def test_out_of_range_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DecodeConfig(**options)


def test_defaults_follow_the_paper():
    config = DecodeConfig()
    assert (config.top_k, config.alpha, config.selection, config.method) == (10, 10.0, "greedy", "tq-direct")


@pytest.mark.parametrize("method, horizon", [("tq-direct", 20), ("tq-indirect", 5)])
def test_compat_switch_sets_the_authors_released_behaviour(method, horizon):
    config = DecodeConfig(method=method, compat=True, num_rollouts=1)
    assert config.horizon == horizon
    assert {k: getattr(config, k) for k in AUTHORS_SETTINGS} == AUTHORS_SETTINGS
    assert config.beta is None  # β = 2 is applied to an explicit r_BL only, when the decoder is built


def test_compat_refuses_options_it_would_change_naming_each():
    with pytest.raises(ConfigError, match=r"top_k=3 \(compat: 10\); alpha=4.0 \(compat: 1.0\)"):
        DecodeConfig(compat=True, top_k=3, alpha=4.0)


@pytest.mark.parametrize("method", ["tq-indirect", "soft"])
def test_weighted_estimators_default_to_four_sampled_rollouts(method):
    config = DecodeConfig(method=method)
    assert (config.rollouts, config.rollout_temp) == (4, 1.0)
    assert (DecodeConfig(method="tq-direct").rollouts, DecodeConfig(method="cd").rollout_temp) == (1, 0.0)


@pytest.mark.parametrize("method", ["tq-indirect", "soft"])
@pytest.mark.parametrize("options, message", [
    ({"num_rollouts": 1}, "num_rollouts=1: one self-normalised weight is always 1"),
    ({"rollout_temperature": 0.0}, "rollout_temperature=0 makes every rollout the same greedy text"),
])
def test_weighted_estimators_refuse_rollouts_that_cannot_transfer(method, options, message):
    with pytest.raises(ConfigError, match=message):
        DecodeConfig(method=method, **options)


@pytest.mark.parametrize("options, message", [
    ({"method": "soft"}, "which soft does not: it applies to cd and tq-direct"),
    ({"method": "args"}, "which args does not"),
    ({"method": "tq-direct"}, "num_rollouts=1 and rollout_temperature=0"),
    ({"method": "cd", "rollout_temperature": 1.0}, "num_rollouts=1 and rollout_temperature=1"),
])
@pytest.mark.parametrize("option", [{"rollout_value": "best"}, {"sampled_steps": 2}])
def test_the_options_of_sampled_rollouts_need_a_plain_rollout_method_and_several_sampled_rollouts(option, options,
                                                                                                  message):
    with pytest.raises(ConfigError, match=message):
        DecodeConfig(**option, **options)
    assert DecodeConfig(method="cd", **option, num_rollouts=4, rollout_temperature=1.0).rollouts == 4


def test_rollout_value_and_sampled_steps_refuse_what_they_cannot_do():
    with pytest.raises(ConfigError, match="Unknown rollout_value"):
        DecodeConfig(rollout_value="median")
    with pytest.raises(ConfigError, match="sampled_steps must be ≥ 1"):
        DecodeConfig(sampled_steps=0, num_rollouts=4, rollout_temperature=1.0)
    with pytest.raises(ConfigError, match="with --block-size it is not implemented"):
        DecodeConfig(sampled_steps=2, num_rollouts=4, rollout_temperature=1.0, block_size=4)


FLOATS = ["alpha", "rollout_temperature", "selection_temperature", "beta"]
INTS = ["top_k", "num_rollouts", "horizon", "best_of", "max_new_tokens", "batch_size", "seed", "block_size",
        "sampled_steps"]
#: What an option needs beside it to be valid at all.
NEEDS = {"sampled_steps": {"num_rollouts": 4, "rollout_temperature": 1.0}}


@pytest.mark.parametrize("name", FLOATS + INTS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_every_number_refuses_nan_and_infinity(name, value):
    with pytest.raises(ConfigError, match=f"{name} must be a finite number"):
        DecodeConfig(**{name: value})


@pytest.mark.parametrize("name", INTS)
def test_every_integer_refuses_fractions_and_accepts_whole_floats(name):
    with pytest.raises(ConfigError, match=f"{name} must be a whole number, got 2.5"):
        DecodeConfig(**{name: 2.5})
    whole = getattr(DecodeConfig(**{name: 1.0}, **NEEDS.get(name, {})), name)
    assert whole == 1 and isinstance(whole, int)


@pytest.mark.parametrize("name, value, message", [
    ("compat", "yes", "compat must be true or false"),
    ("fixed_horizon", 1, "fixed_horizon must be true or false"),
    ("method", 3, "method must be text"),
    ("top_k", True, "top_k must be a number"),
])
def test_values_of_the_wrong_kind_are_refused(name, value, message):
    with pytest.raises(ConfigError, match=message):
        DecodeConfig(**{name: value})


def test_config_files_go_through_the_same_checks(tmp_path):
    path = tmp_path / "options.toml"
    path.write_text("alpha = nan\ntop_k = 3\n")
    with pytest.raises(ConfigError, match="alpha must be a finite number"):
        split_options(load_config_file(path))
    path.write_text("horizon = 2.7\n")
    with pytest.raises(ConfigError, match="horizon must be a whole number"):
        split_options(load_config_file(path))


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


@pytest.mark.parametrize("name, bound", sorted(SIZE_BOUNDS.items()))
def test_every_size_option_has_an_upper_bound_that_the_message_names(name, bound):
    with pytest.raises(ConfigError, match=rf"{name} must be ≤ {bound} \(memory grows with it\), got {bound + 1}\. "
                                          rf"Set {name} to {bound} or less"):
        DecodeConfig(**{name: bound + 1})
    sampled = {"rollout_temperature": 1.0, "top_k": 1} if name == "num_rollouts" else {}
    assert getattr(DecodeConfig(**{name: bound, **sampled}), name) == bound


def test_many_rollouts_are_sampled_in_chunks_of_bounded_rows(monkeypatch):
    asked = []

    class Recorder:  # hands back one placeholder per requested rollout and records the rows asked for
        def sample_continuations(self, prefixes, branches, num_samples, horizons, temperature, generator):
            asked.append(len(branches[0]) * num_samples)
            return [[[("rollout", token)] * num_samples for token in row] for row in branches]

    monkeypatch.setattr(rollouts, "ROLLOUT_ROWS_BOUND", 6)
    spec = rollouts.RolloutSpec(model=Recorder(), text_model=Recorder(), reward=None, num_rollouts=10)
    out = rollouts._sample_in_chunks(spec, [[1], [2]], [[5, 6, 7], [8, 9, 4]], [3, 3])
    assert asked == [6, 6, 6, 6, 6] and max(asked) <= 6  # 3 candidates × 2 rollouts per call
    assert [[len(cand) for cand in row] for row in out] == [[10, 10, 10], [10, 10, 10]]
    assert out[1][2] == [("rollout", 4)] * 10


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "holds a JSON list, not an object of options"),
    (b'"top_k"', "holds a JSON str, not an object of options"),
    (b'{"top_k": \xff}', "is not UTF-8 text"),
    (b"[" * 5000, "is not valid JSON"),
])
def test_a_config_file_that_is_not_an_object_of_options_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "options.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_config_file(path)


def test_list_options_refuse_anything_but_a_list_of_text():
    from tqstar.eval.config import EvalConfig

    with pytest.raises(ConfigError, match="methods must be a list of text"):
        EvalConfig(output="out", methods="greedy")
    with pytest.raises(ConfigError, match="sweep must be a list of text"):
        EvalConfig(output="out", methods=["greedy"], sweep=[1])


def _align(**options):
    from tqstar.align import AlignConfig

    return AlignConfig(output="unused", **options)


def _bench(**options):
    from tqstar.bench import BenchConfig

    return BenchConfig(**options)


def _eval(**options):
    from tqstar.eval.config import EvalConfig

    return EvalConfig(output="unused", methods=["greedy"], **options)


@pytest.mark.parametrize("make, name, bound", [
    (_align, "samples_per_prompt", 64), (_align, "max_new_tokens", 4096), (_align, "batch_size", 256),
    (_align, "lora_r", 256), (_bench, "top_k", 256), (_bench, "horizon", 4096), (_bench, "new_tokens", 4096),
    (_eval, "max_new_tokens", 4096), (_eval, "batch_size", 256), (_eval, "workers", 64),
])
def test_size_options_of_every_command_have_an_upper_bound(make, name, bound):
    with pytest.raises(ConfigError, match=rf"{name} must be ≤ {bound} \(.*\), got {bound + 1}\. Set {name} to"):
        make(**{name: bound + 1})
    assert getattr(make(**{name: bound}), name) == bound


def test_align_samples_at_a_temperature_that_stays_finite():
    with pytest.raises(ConfigError, match="temperature must be ≥ 0.01"):
        _align(temperature=1e-300)
