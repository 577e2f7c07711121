"""Which models fill the roles: the shipped default baseline, implicit-reward checks, β from metadata."""

import pytest

from tqstar.decoding import DecodeConfig, Roles, RolesConfig, baseline_spec_for, build_decoder
from tqstar.errors import ConfigError
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward

LENGTH = CallableReward(lambda prompts, responses: [len(r) / 10 for r in responses], "length")


def test_embedded_reference_defaults_to_the_shipped_helpful_harmless_baseline(tiny_model_dir):
    assert baseline_spec_for(RolesConfig()) == "bl-helpful-harmless"
    assert baseline_spec_for(RolesConfig(reference="embedded")) == "bl-helpful-harmless"
    assert baseline_spec_for(RolesConfig(reference=str(tiny_model_dir))) is None  # the reference itself
    assert baseline_spec_for(RolesConfig(baseline="bl-sentiment")) == "bl-sentiment"


def test_implicit_reward_refuses_an_adapter_trained_on_another_reference(tiny_model_dir):
    config = RolesConfig(reference=str(tiny_model_dir), baseline="bl-helpful-harmless", baseline_reward="implicit")
    with pytest.raises(ConfigError, match="trained on 'smollm2'.*--reference smollm2"):
        Roles.load(config)


@pytest.mark.parametrize("baseline", [None, "SAME"])
def test_implicit_reward_refuses_the_reference_as_its_own_baseline_even_with_beta(tmp_path, baseline):
    config = RolesConfig(reference=str(tmp_path), baseline=str(tmp_path) if baseline else None,
                         baseline_reward="implicit")
    with pytest.raises(ConfigError, match="the baseline is the reference itself.*0 for every response"):
        Roles.load(config)


def test_implicit_reward_without_metadata_asks_for_beta(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    roles = Roles(tiny, tiny, LENGTH, implicit=True)
    with pytest.raises(ConfigError, match="--beta"):
        build_decoder(DecodeConfig(method="tq-indirect"), roles)
    assert build_decoder(DecodeConfig(method="tq-indirect", beta=0.5), roles).estimator.spec.beta == 0.5
    assert build_decoder(DecodeConfig(method="tq-direct"), roles).estimator.spec.beta == 1.0


@pytest.mark.slow
def test_implicit_reward_takes_beta_from_the_adapter_metadata(embedded):
    roles = Roles.load(RolesConfig(baseline="bl-helpful-harmless", baseline_reward="implicit"))
    assert roles.implicit and roles.baseline_beta == 0.1
    assert build_decoder(DecodeConfig(method="tq-indirect"), roles).estimator.spec.beta == 0.1
    assert build_decoder(DecodeConfig(method="soft", beta=2.0), roles).estimator.spec.beta == 2.0


@pytest.mark.slow
def test_shipped_adapter_changes_the_reference_distribution(embedded):
    adapted = load_language_model("bl-helpful-harmless")
    prefix = [embedded.encode_prompt("How can I sleep better?")]
    assert adapted.vocabulary == embedded.vocabulary
    variation = 0.5 * (adapted.next_token_logprobs(prefix).exp() - embedded.next_token_logprobs(prefix).exp()).abs().sum()
    assert 1e-3 < variation < 0.9  # merged LoRA: the same model, moved


def test_int8_baseline_is_a_quantised_copy_that_leaves_the_reference_alone(tiny_model_dir):
    roles = Roles.load(RolesConfig(reference=str(tiny_model_dir), reward="sentiment", int8_baseline=True))
    assert roles.baseline is not roles.reference and roles.baseline.name.endswith("+int8")
    assert roles.baseline.vocabulary == roles.reference.vocabulary
    assert any("quantized" in type(m).__module__ for m in roles.baseline.model.modules())
    assert not any("quantized" in type(m).__module__ for m in roles.reference.model.modules())
    prefix = roles.reference.encode_prompt("Say hello.")
    exact, quantised = roles.reference.next_token_logprobs([prefix]), roles.baseline.next_token_logprobs([prefix])
    assert float((exact.exp() - quantised.exp()).abs().sum()) < 0.1  # close, not equal
    out = roles.baseline.sample_continuations([prefix], [[5, 6]], 1, 3, 0.0)
    assert [len(branch) for branch in out[0]] == [1, 1]
    again = Roles.load(RolesConfig(reference=str(tiny_model_dir), reward="sentiment", int8_baseline=True))
    assert again.baseline is roles.baseline  # quantised once per source model
    assert roles.baseline.source_network is roles.reference.model  # what the audit log fingerprints


def test_int8_baseline_refuses_weights_that_are_not_float32(tiny_model_dir):
    with pytest.raises(ConfigError, match="quantises float32 weights.*bfloat16"):
        Roles.load(RolesConfig(reference=str(tiny_model_dir), reward="sentiment", dtype="bfloat16", int8_baseline=True))


def test_baseline_dtype_loads_the_baseline_alone_in_it(tiny_model_dir):
    import torch

    roles = Roles.load(RolesConfig(reference=str(tiny_model_dir), reward="sentiment", baseline_dtype="bfloat16"))
    assert roles.baseline is not roles.reference  # no baseline named: the reference, copied in bfloat16
    assert roles.baseline.model.dtype == torch.bfloat16 and roles.reference.model.dtype == torch.float32
    prefix = roles.reference.encode_prompt("Say hello.")
    exact, halved = roles.reference.next_token_logprobs([prefix]), roles.baseline.next_token_logprobs([prefix])
    assert 0 < float((exact.exp() - halved.exp()).abs().sum()) < 0.1  # close, not equal
    same = Roles.load(RolesConfig(reference=str(tiny_model_dir), reward="sentiment", baseline_dtype="float32"))
    assert same.baseline is same.reference  # the reference's own dtype: no second copy


@pytest.mark.parametrize("options, message", [
    ({"baseline_dtype": "int4"}, "Unknown baseline_dtype 'int4'. Use one of: auto, float32"),
    ({"baseline_dtype": "bfloat16", "int8_baseline": True}, "Drop one of --int8-baseline and --baseline-dtype"),
])
def test_bad_baseline_dtypes_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        RolesConfig(reward="sentiment", **options)
