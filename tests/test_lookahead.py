"""Lookahead (``lookahead`` > 0 prompts): on the exact tabular oracle it writes the token decoder's responses and
traces in fewer steps; with sampled selection every token still follows π_alg at its state; a stream cut
after a guessed token keeps no trace of the token after it; it runs on a real (tiny) transformers model."""

import math
from collections import Counter

import pytest

from tabular import EOS, MAX_TOKENS, R, TabularLM
from tqstar.decoding import DecodeConfig, LookaheadDecoder, Roles, ValueGuidedDecoder, build_decoder
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward

ROLES = Roles(TabularLM.random(seed=5), TabularLM.random(seed=2), R)  # its favourite first token is not EOS
PROMPTS = ["x", "y", "z"]


def config(method="tq-direct", **options):
    return DecodeConfig(**{"method": method, "top_k": 3, "alpha": 2.0, "horizon": 2, "max_new_tokens": MAX_TOKENS,
                           "lookahead": 0, **options})


def counting_steps(decoder):
    """Wrap ``step_distribution`` to count the steps (estimator calls) a decoder takes."""
    calls = []
    plain = decoder.step_distribution
    decoder.step_distribution = lambda *args, **kwargs: calls.append(1) or plain(*args, **kwargs)
    return calls


@pytest.mark.parametrize("method, options", [("args", {}), ("cd", {}), ("tq-direct", {}),
                                             ("tq-direct", {"prune": True}), ("tq-direct", {"alpha": 0.0})])
def test_lookahead_writes_the_token_decoder_s_responses_and_traces(method, options):
    token = build_decoder(config(method, **options), ROLES)
    ahead = build_decoder(config(method, lookahead=len(PROMPTS), **options), ROLES)
    assert type(token) is ValueGuidedDecoder and isinstance(ahead, LookaheadDecoder)
    results = ahead.generate(PROMPTS)
    expected = token.generate(PROMPTS)
    assert [r.token_ids for r in results] == [r.token_ids for r in expected]
    assert [r.trace for r in results] == [r.trace for r in expected]


def test_when_the_favourite_wins_two_tokens_come_from_one_step():
    """At α = 0 π_alg is the prior, so the guess (the favourite) is always chosen: a step commits two tokens
    whenever two more fit the budget."""
    ahead = build_decoder(config(alpha=0.0, lookahead=1, max_new_tokens=3), ROLES)
    steps = counting_steps(ahead)
    result = ahead.generate(["x"])[0]
    assert len(result.token_ids) == 3 and len(steps) == 2


def test_with_sampled_selection_each_token_is_drawn_from_pi_alg_at_its_state():
    """The first two tokens' joint frequency over many responses equals π_alg(z1 | x) · π_alg(z2 | x, z1), the
    token decoder's step distributions, although z2 is often drawn in the step that drew z1."""
    options = dict(method="args", selection="sample", batch_size=200, max_new_tokens=3)
    token = build_decoder(config(**options), ROLES)
    first = token.step_distribution(["x"], [[]])
    exact = {}
    for z1, p1 in zip(first.candidates[0].tolist(), first.probabilities[0].tolist()):
        if z1 == EOS:
            exact[(z1,)] = p1
            continue
        second = token.step_distribution(["x"], [[z1]])
        for z2, p2 in zip(second.candidates[0].tolist(), second.probabilities[0].tolist()):
            exact[(z1, z2)] = p1 * p2
    ahead = build_decoder(config(lookahead=200, **options), ROLES)
    committed = []
    plain = ahead._next_blocks
    ahead._next_blocks = lambda *state: committed.extend(blocks := plain(*state)) or blocks
    draws = 2000
    seen = Counter(tuple(r.token_ids[:2]) for r in ahead.generate(["x"] * draws))
    assert sum(len(block) == 2 for block in committed) > draws / 10  # second tokens drawn with the first
    for pair, p in exact.items():
        assert seen[pair] / draws == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / draws) + 0.005), pair


def test_a_stream_cut_after_a_guessed_token_keeps_only_that_token_s_trace():
    decoder = build_decoder(config(lookahead=1), ROLES)
    full = decoder.generate(["x"])[0]
    assert len(full.token_ids) >= 2 and len(full.trace) == len(full.token_ids)
    cut = decoder.generate(["x"], on_token=lambda index, token: True)[0]
    assert cut.token_ids == full.token_ids[:1] and cut.trace == full.trace[:1]


def test_lookahead_applies_while_at_most_its_number_of_prompts_decode():
    calls = []
    decoder = build_decoder(config(alpha=0.0, lookahead=2), ROLES)
    plain = decoder.step_distribution
    decoder.step_distribution = lambda prompts, *args: calls.append(len(prompts)) or plain(prompts, *args)
    decoder.generate(["x", "y", "z"])
    decoder.generate(["x", "y"])
    assert calls[0] == 3 and 4 in calls  # three prompts: their states only; two: theirs and two guessed ones
    assert DecodeConfig().lookahead == 1 and isinstance(build_decoder(DecodeConfig(), ROLES), LookaheadDecoder)


def test_lookahead_writes_the_token_decoder_s_answers_on_a_transformers_model(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    length = CallableReward(lambda prompts, texts: [len(t) / 10 for t in texts], "length")
    decode = DecodeConfig(method="tq-direct", top_k=3, horizon=3, max_new_tokens=8, lookahead=0)
    roles = Roles(tiny, tiny, length)
    prompts = ["Hi", "Name a colour."]
    plain = build_decoder(decode, roles).generate(prompts)
    ahead = build_decoder(DecodeConfig(**{**decode.__dict__, "lookahead": 2}), roles).generate(prompts)
    assert [r.token_ids for r in ahead] == [r.token_ids for r in plain]
    for result in ahead:
        assert [step.position for step in result.trace] == list(range(len(result.token_ids)))
