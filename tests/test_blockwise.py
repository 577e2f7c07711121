"""Blockwise mode (block_size B > 1): on the exact tabular oracle the decoder's blocks, priors, values and
choices equal their enumerated definitions; B = 1 is the token decoder; streaming and the KL bookkeeping
follow blocks; every value-guided method runs blockwise on a real (tiny) transformers model."""

import math
from dataclasses import replace
from itertools import product

import pytest
import torch

from tabular import EOS, MAX_TOKENS, R, R_BL, VOCAB, TabularLM, aligned, baseline_reward, responses, target_reward, text
from tqstar.errors import ConfigError
from tqstar.decoding import BlockwiseDecoder, DecodeConfig, Roles, ValueGuidedDecoder, build_decoder
from tqstar.eval.metrics import KL_BLOCKWISE, KL_BLOCKWISE_SAMPLED, KL_STEPWISE, response_kls
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward, load_reward

BETA, ALPHA, H = 0.8, 2.0, 3
STATES = [(), (1,), (3,)]  # y_<t of the states under test


REFERENCE, BASELINE = TabularLM.random(seed=1), TabularLM.random(seed=2)
ROLES = Roles(REFERENCE, BASELINE, R)


def config(method="cd", block_size=2, **options):
    return DecodeConfig(**{"method": method, "block_size": block_size, "top_k": 3, "alpha": ALPHA, "horizon": H,
                           "max_new_tokens": MAX_TOKENS, **options})


def greedy(model: TabularLM, prefix, n: int) -> tuple[int, ...]:
    """n greedy tokens after ``prefix``, fewer when EOS comes first."""
    out: list[int] = []
    while len(out) < n and (not out or out[-1] != EOS):
        out.append(int(model.table[(*prefix, *out)].argmax()))
    return tuple(out)


def exact_block_step(method: str, block_size: int, state, roles=ROLES, top_k=3):
    """The definition, enumerated: the proposal's top-k first tokens continued greedily to B tokens (EOS and
    the budget end a block early), the prior's log-prob of each block, Q̂ (ARGS: the reward of [y, block];
    rollouts: greedy H − B + 1 tokens of the rollout model after the block) and π_alg."""
    first = roles.reference.table[state].log().topk(top_k).indices.tolist()
    room = MAX_TOKENS - len(state)
    blocks = [(z, *greedy(roles.reference, (*state, z), min(block_size, room) - 1)) if z != EOS else (z,)
              for z in first]
    prior = [roles.reference.logprob(state, b) for b in blocks]
    values = [block_value(method, block_size, state, b, roles) for b in blocks]
    logits = torch.tensor(prior, dtype=torch.float64) + ALPHA * torch.tensor(values, dtype=torch.float64)
    return blocks, prior, values, torch.softmax(logits, 0)


def block_value(method: str, block_size: int, state, block, roles=ROLES) -> float:
    """Q̂ of one block: ARGS the reward of [y, block]; rollouts greedy H − B + 1 tokens of the rollout model
    after the block, within the budget."""
    rollout_model = {"cd": roles.reference, "tq-direct": roles.baseline}.get(method)
    room = MAX_TOKENS - len(state) - len(block)
    after = () if rollout_model is None or block[-1] == EOS else greedy(
        rollout_model, (*state, *block), min(H - block_size + 1, room))
    return target_reward(text((*state, *block, *after)))


def every_block(state, block_size: int) -> list[tuple[int, ...]]:
    """Every block the proposal can draw at ``state``: B letters, or fewer ending in EOS or at the budget."""
    room = min(block_size, MAX_TOKENS - len(state))
    ended = [(*body, EOS) for n in range(room) for body in product(range(1, VOCAB), repeat=n)]
    return ended + list(product(range(1, VOCAB), repeat=room))


@pytest.mark.parametrize("method", ["args", "cd", "tq-direct"])
@pytest.mark.parametrize("block_size", [2, 3])
def test_block_values_equal_their_enumerated_definition_and_the_argmax_is_chosen(method, block_size):
    decoder = build_decoder(config(method, block_size), ROLES)
    assert isinstance(decoder, BlockwiseDecoder)
    step = decoder.block_distribution(["x"] * len(STATES), [list(s) for s in STATES])
    for a, state in enumerate(STATES):
        blocks, prior, values, probabilities = exact_block_step(method, block_size, state)
        assert [tuple(b) for b in step.blocks[a]] == blocks
        assert step.candidates[a].tolist() == [b[0] for b in blocks]
        assert step.prior[a].tolist() == pytest.approx(prior, abs=1e-12)
        assert step.values[a].tolist() == pytest.approx(values, abs=1e-12)
        assert step.probabilities[a] == pytest.approx(probabilities, abs=1e-12)
    result = decoder.generate(["x"])[0]
    first = result.trace[0]
    blocks, _, _, probabilities = exact_block_step(method, block_size, ())
    assert tuple(first.chosen_block) == blocks[int(probabilities.argmax())]
    assert [t for step in result.trace for t in step.chosen_block] == result.token_ids
    for step in result.trace:
        assert step.chosen_block == step.blocks[max(range(3), key=step.probabilities.__getitem__)]
        assert step.chosen == step.chosen_block[0] and step.chosen_text == text(step.chosen_block)
        assert len(step.chosen_block) <= block_size


class CountingLM(TabularLM):
    """A tabular model that counts the rollout rows it is asked for."""

    rows = 0

    def sample_continuations(self, prefixes, branches, *args, **kwargs):
        self.rows += sum(len(b) for b in branches) if branches is not None else len(prefixes)
        return super().sample_continuations(prefixes, branches, *args, **kwargs)


def test_sampled_blocks_come_from_the_proposal_and_a_repeated_block_is_valued_once_and_weighs_its_draws():
    baseline = CountingLM(BASELINE.table)
    decoder = build_decoder(config("tq-direct", 2, top_k=12, block_candidates="sampled"),
                            Roles(REFERENCE, baseline, R))
    step = decoder.block_distribution(["x"] * len(STATES), [list(s) for s in STATES])
    distinct = 0
    for a, state in enumerate(STATES):
        blocks = [tuple(b) for b in step.blocks[a]]
        assert set(blocks) <= set(every_block(state, 2)) and len(set(blocks)) < len(blocks)  # k > the blocks
        distinct += len(set(blocks))
        assert step.prior[a].tolist() == pytest.approx([REFERENCE.logprob(state, b) for b in blocks], abs=1e-12)
        assert step.values[a].tolist() == pytest.approx([block_value("tq-direct", 2, state, b) for b in blocks],
                                                        abs=1e-12)
        weight = {b: blocks.count(b) * math.exp(ALPHA * block_value("tq-direct", 2, state, b)) for b in blocks}
        first = [blocks.index(b) == j for j, b in enumerate(blocks)]
        expected = [weight[b] / sum(weight.values()) if is_first else 0.0 for b, is_first in zip(blocks, first)]
        assert step.probabilities[a].tolist() == pytest.approx(expected, abs=1e-12)
    assert baseline.rows == distinct


@pytest.mark.parametrize("proposal", ["reference", "baseline"])
def test_sampled_blocks_tend_to_pi_alg_over_every_block(proposal):
    """The self-normalised estimate over k sampled blocks, averaged over draws, approaches π_alg(block) ∝
    ρ_ref(block)·exp(α·Q̂(block)) over every block, also when the proposal (here a baseline aligned to the
    target, as a proposal should be) is not the prior."""
    roles = Roles(REFERENCE, TabularLM.from_distribution(aligned(REFERENCE, target_reward, 1.0)), R)
    decode = config("tq-direct", 2, top_k=256, block_candidates="sampled", proposal=proposal)
    mass: dict[tuple[int, ...], float] = {}
    draws = 20
    for seed in range(draws):
        step = build_decoder(replace(decode, seed=seed), roles).block_distribution(["x"], [[]])
        for b, p in zip(step.blocks[0], step.probabilities[0].tolist()):
            mass[tuple(b)] = mass.get(tuple(b), 0.0) + p / draws
    weight = {b: math.exp(REFERENCE.logprob((), b) + ALPHA * block_value("tq-direct", 2, (), b, roles))
              for b in every_block((), 2)}
    for b, w in weight.items():
        assert mass.get(b, 0.0) == pytest.approx(w / sum(weight.values()), abs=0.03), b


def test_sampled_blocks_need_a_block_of_two_tokens_or_more():
    with pytest.raises(ConfigError, match="block_size is 1"):
        config("tq-direct", 1, block_candidates="sampled")


def test_block_size_one_builds_the_token_decoder_and_decodes_identically():
    token = build_decoder(DecodeConfig(method="cd", top_k=3, alpha=ALPHA, horizon=H, max_new_tokens=MAX_TOKENS),
                          ROLES)
    one = build_decoder(config("cd", 1), ROLES)
    assert isinstance(one, ValueGuidedDecoder) and not isinstance(one, BlockwiseDecoder)
    assert [r.trace for r in one.generate(["x", "y"])] == [r.trace for r in token.generate(["x", "y"])]


def test_blocks_of_one_token_are_the_token_decoder_s_candidates_values_and_choices():
    token = build_decoder(config("tq-direct", 1), ROLES)
    blockwise = BlockwiseDecoder(block_size=1, proposal=REFERENCE, prior=REFERENCE, estimator=token.estimator,
                                 settings=token.settings, method="tq-direct", reward=R)
    states = [list(s) for s in STATES]
    steps = token.step_distribution(["x"] * 3, states), blockwise.block_distribution(["x"] * 3, states)
    assert torch.equal(steps[0].candidates, steps[1].candidates)
    assert torch.equal(steps[0].values, steps[1].values)
    assert steps[1].probabilities == pytest.approx(steps[0].probabilities, abs=1e-12)
    assert blockwise.generate(["x"])[0].token_ids == token.generate(["x"])[0].token_ids


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-r_BL", "implicit-r_BL"])
def test_soft_blocks_follow_the_aligned_optimum_over_the_candidate_blocks(implicit):
    """π_alg(block) ∝ ρ_BL(block) · E[exp((r − r_BL)/β)] = ρ*_r(block | s) with an exactly aligned baseline. With
    DPO's implicit r_BL the block's own tokens before its last enter r_BL too, which the decoder adds."""
    baseline = TabularLM.from_distribution(aligned(REFERENCE, baseline_reward, BETA))
    roles = Roles(REFERENCE, baseline, R, baseline_reward=None if implicit else R_BL, implicit=implicit)
    decoder = build_decoder(config("soft", 2, top_k=VOCAB, horizon=None, num_rollouts=20000, beta=BETA), roles)
    step = decoder.block_distribution(["x"], [[]])
    rho_star = aligned(REFERENCE, target_reward, BETA)
    mass = torch.tensor([sum(rho_star[y] for y in responses(tuple(b))) for b in step.blocks[0]], dtype=torch.float64)
    assert step.probabilities[0] == pytest.approx(mass / mass.sum(), abs=0.02)


def test_streaming_sees_every_token_in_order_and_may_end_inside_a_block():
    decoder = build_decoder(config("args", 3), ROLES)
    seen = []
    full = decoder.generate(["x"], on_token=lambda index, token: seen.append(token) is not None)[0]
    assert seen == full.token_ids and len(full.trace[0].chosen_block) > 1
    cut = decoder.generate(["x"], on_token=lambda index, token: True)[0]  # stop after the first token
    assert cut.token_ids == full.token_ids[:1] and len(cut.trace) == 1
    step = cut.trace[0]
    assert step.chosen_block == cut.token_ids and step.chosen_text == cut.text == text(cut.token_ids)
    assert step.blocks == full.trace[0].blocks and cut.reward == pytest.approx(target_reward(cut.text))


@pytest.mark.parametrize("prior", ["reference", "baseline"])
def test_blockwise_kl_sums_each_block_s_kl_to_the_reference_and_names_its_estimator(prior):
    decode = config("tq-direct", 2, prior=prior)
    results = build_decoder(decode, ROLES).generate(["x", "y"])
    kls, estimator = response_kls(results, decode, ROLES)
    assert estimator == KL_BLOCKWISE
    for result, kl in zip(results, kls):
        expected = sum(p * (math.log(p) - REFERENCE.logprob(tuple(result.token_ids[:step.position]), tuple(b)))
                       for step in result.trace for p, b in zip(step.probabilities, step.blocks) if p > 0)
        assert kl == pytest.approx(expected, abs=1e-9) and kl > 0
    token = config("tq-direct", 1, prior=prior)
    assert response_kls(build_decoder(token, ROLES).generate(["x"]), token, ROLES)[1] == KL_STEPWISE
    sampled = config("tq-direct", 2, prior=prior, block_candidates="sampled")
    assert response_kls(build_decoder(sampled, ROLES).generate(["x"]), sampled, ROLES)[1] == KL_BLOCKWISE_SAMPLED


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


@pytest.mark.parametrize("method, extra, candidates", [
    ("args", {}, "top-k"), ("cd", {}, "top-k"), ("tq-direct", {}, "top-k"), ("tq-direct", {}, "sampled"),
    ("tq-indirect", {"baseline_reward": "sentiment"}, "top-k"), ("soft", {"implicit": True}, "top-k"),
])
def test_every_value_guided_method_runs_blockwise_on_a_transformers_model(tiny, method, extra, candidates):
    if "baseline_reward" in extra:
        extra = {"baseline_reward": load_reward(extra["baseline_reward"])}
    length = CallableReward(lambda prompts, texts: [len(t) / 10 for t in texts], "length")
    decode = DecodeConfig(method=method, block_size=3, top_k=3, horizon=4, max_new_tokens=7, beta=1.0,
                          block_candidates=candidates)
    results = build_decoder(decode, Roles(tiny, tiny, length, **extra)).generate(["Hi", "Name a colour."])
    for result in results:
        assert result.text == tiny.decode(result.token_ids) and math.isfinite(result.reward)
        assert 1 <= len(result.trace) <= len(result.token_ids) <= 7
        assert [t for step in result.trace for t in step.chosen_block] == result.token_ids
        for step in result.trace:
            assert sum(step.probabilities) == pytest.approx(1.0) and all(map(math.isfinite, step.values))
            assert all(1 <= len(b) <= 3 and b[0] == z for b, z in zip(step.blocks, step.candidates))
            assert step.chosen_block == step.blocks[max(range(3), key=step.probabilities.__getitem__)]
