"""Exact oracle: on the tabular model every quantity of the paper is enumerated, and each estimator
must match its definition (exactly, or within Monte-Carlo error that shrinks as rollouts grow)."""

import math

import pytest
import torch

from tabular import (EOS, R, R_BL, VOCAB, TabularLM, aligned, baseline_reward, distribution_of, expectation,
                     responses, target_reward, text)
from tqstar.decoding import DecodingSettings, ValueGuidedDecoder
from tqstar.rewards import CallableReward
from tqstar.decoding import (BestRolloutValue, FirstStepsValue, IndirectValue, MeanRolloutValue, PartialReward,
                             RolloutSpec, SoftTransferValue, ValueEstimate, ValueQuery)

BETA = 0.8


REFERENCE = TabularLM.random(seed=1)
RHO_STAR = aligned(REFERENCE, target_reward, BETA)
STATES = [(), (1,), (2, 3)]  # y_<t of the states s_t under test


def all_candidates(states):
    return ValueQuery(["x"] * len(states), [list(s) for s in states],
                      torch.arange(VOCAB).repeat(len(states), 1))


def q_star(state, z) -> float:
    """Q*(s_t, z) = E_{τ ~ ρ*_r(· | s_t, z)} r(x, [y_<t, z, τ])."""
    return expectation(RHO_STAR, (*state, z), lambda y: target_reward(text(y)))


def exact_table(fn, states=STATES) -> torch.Tensor:
    return torch.tensor([[fn(s, z) for z in range(VOCAB)] for s in states], dtype=torch.float64)


def rollout_spec(model, n, seed=0, **extra):
    return RolloutSpec(model=model, text_model=REFERENCE, reward=R, num_rollouts=n, horizon=None,
                       temperature=1.0, beta=BETA, generator=torch.Generator().manual_seed(seed), **extra)


def max_error(estimator, exact) -> float:
    return float((estimator.estimate(all_candidates(STATES)).values - exact).abs().max())


def test_args_value_is_reward_of_partial_response():
    values = PartialReward(REFERENCE, R).estimate(all_candidates(STATES)).values
    assert values == pytest.approx(exact_table(lambda s, z: target_reward(text((*s, z)))), abs=1e-12)


def test_cd_value_converges_to_reference_rollout_mean():
    exact = exact_table(lambda s, z: expectation(distribution_of(REFERENCE), (*s, z),
                                                 lambda y: target_reward(text(y))))
    assert max_error(MeanRolloutValue(rollout_spec(REFERENCE, 20000)), exact) < 0.03


def test_direct_transfer_with_exact_baseline_converges_to_q_star():
    baseline = TabularLM.from_distribution(RHO_STAR)
    exact = exact_table(q_star)
    few = max_error(MeanRolloutValue(rollout_spec(baseline, 10)), exact)
    many = max_error(MeanRolloutValue(rollout_spec(baseline, 20000)), exact)
    assert many < 0.03
    assert many < few / 4


def best_of_n_value(dist, prefix, n: int) -> float:
    """E[max of n rewards of responses drawn from ``dist`` given ``prefix``] = Σ_v v·(F(v)ⁿ − F(v⁻)ⁿ)."""
    ys = responses(tuple(prefix))
    mass = sum(dist[y] for y in ys)
    by_reward: dict[float, float] = {}
    for y in ys:
        by_reward[target_reward(text(y))] = by_reward.get(target_reward(text(y)), 0.0) + dist[y] / mass
    value, below = 0.0, 0.0
    for reward in sorted(by_reward):
        value += reward * ((below + by_reward[reward]) ** n - below ** n)
        below += by_reward[reward]
    return value


def test_best_of_rollouts_is_an_unbiased_estimate_of_best_of_n_of_the_rollout_model():
    """Averaged over independent estimates, the best of N rollouts converges to E[max of N], the value of
    Best-of-N of the rollout model, which is above the rollout model's own value (the mean's)."""
    n, repeats = 3, 4000
    dist = distribution_of(REFERENCE)
    exact = exact_table(lambda s, z: best_of_n_value(dist, (*s, z), n))
    mean = exact_table(lambda s, z: expectation(dist, (*s, z), lambda y: target_reward(text(y))))
    values = BestRolloutValue(rollout_spec(REFERENCE, n)).estimate(all_candidates(STATES * repeats)).values
    averaged = values.view(repeats, len(STATES), VOCAB).mean(0)
    assert float((averaged - exact).abs().max()) < 0.03
    assert float((exact - mean).max()) > 0.3  # the test tells the best of N from the mean


def greedy_completion(model: TabularLM, prefix) -> tuple[int, ...]:
    """The response the model's argmax continues ``prefix`` into."""
    y = tuple(prefix)
    while y[-1:] != (EOS,):
        y += (int(model.table[y].argmax()),)
    return y


def test_sampled_steps_value_the_first_states_by_sampled_rollouts_and_the_later_ones_by_the_greedy_one():
    """States with fewer than S response tokens get the mean of N sampled rollouts (→ the rollout model's
    value), the others the reward of the one greedy rollout, exactly; one query holds both kinds."""
    sampled = MeanRolloutValue(rollout_spec(REFERENCE, 20000))
    greedy = MeanRolloutValue(RolloutSpec(REFERENCE, REFERENCE, R, horizon=None, temperature=0.0))
    values = FirstStepsValue(sampled, greedy, steps=1).estimate(all_candidates(STATES)).values
    mean = exact_table(lambda s, z: expectation(distribution_of(REFERENCE), (*s, z), lambda y: target_reward(text(y))),
                       STATES)
    assert float((values[:1] - mean[:1]).abs().max()) < 0.03
    assert values[1:] == pytest.approx(exact_table(
        lambda s, z: target_reward(text(greedy_completion(REFERENCE, (*s, z)))), STATES[1:]), abs=1e-12)
    assert float((values[1:] - mean[1:]).abs().max()) > 0.1  # the greedy value is not the mean's


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-r_BL", "implicit-r_BL"])
def test_indirect_transfer_converges_to_q_star_of_target(implicit):
    baseline = TabularLM.from_distribution(aligned(REFERENCE, baseline_reward, BETA))
    extra = {"implicit_reference": REFERENCE} if implicit else {"baseline_reward": R_BL}
    exact = exact_table(q_star)
    few = max_error(IndirectValue(rollout_spec(baseline, 10, **extra)), exact)
    estimate = IndirectValue(rollout_spec(baseline, 20000, **extra)).estimate(all_candidates(STATES))
    assert float((estimate.values - exact).abs().max()) < 0.04
    assert float((estimate.values - exact).abs().max()) < few / 3
    assert estimate.weights.sum(-1) == pytest.approx(torch.ones(len(STATES), VOCAB, dtype=torch.float64))
    assert torch.all(estimate.ess > 1) and torch.all(estimate.ess <= 20000 + 1e-6)


def test_indirect_transfer_without_shift_has_full_ess():
    """A baseline aligned to the target itself gives equal weights: ESS = N."""
    baseline = TabularLM.from_distribution(RHO_STAR)
    estimate = IndirectValue(rollout_spec(baseline, 50, baseline_reward=R)).estimate(all_candidates(STATES))
    assert estimate.ess == pytest.approx(torch.full((len(STATES), VOCAB), 50.0, dtype=torch.float64))


class FixedValue:
    def __init__(self, fn):
        self.fn = fn

    def estimate(self, query: ValueQuery) -> ValueEstimate:
        return ValueEstimate(torch.tensor([[self.fn(tuple(r), z) for z in row]
                                           for r, row in zip(query.responses, query.candidates.tolist())],
                                          dtype=torch.float64))


def decoder(prior, estimator, alpha, top_k=VOCAB):
    return ValueGuidedDecoder(proposal=prior, prior=prior, estimator=estimator,
                              settings=DecodingSettings(top_k=top_k, alpha=alpha))


@pytest.mark.parametrize("alpha", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("top_k", [2, VOCAB])
def test_decoder_distribution_is_softmax_of_prior_plus_alpha_q(alpha, top_k):
    values = lambda s, z: 0.3 * z - 0.1 * len(s)
    step = decoder(REFERENCE, FixedValue(values), alpha, top_k).step_distribution(["x"] * 3, [list(s) for s in STATES])
    for row, state in enumerate(STATES):
        prior = REFERENCE.table[state].log()
        top = prior.topk(top_k).indices
        expected = torch.softmax(prior[top] + alpha * torch.tensor([values(state, int(z)) for z in top], dtype=torch.float64), 0)
        assert step.candidates[row].tolist() == top.tolist()
        assert step.probabilities[row] == pytest.approx(expected, abs=1e-12)


def test_alpha_zero_gives_prior_restricted_to_top_k():
    step = decoder(REFERENCE, FixedValue(lambda s, z: 5.0 * z), 0.0, 2).step_distribution(["x"], [[1]])
    prior = REFERENCE.table[(1,)]
    top = prior.topk(2)
    assert step.probabilities[0] == pytest.approx(top.values / top.values.sum(), abs=1e-12)


def response_distribution(dec) -> dict:
    """Probability the decoder (sampling from π_alg) writes each complete response."""
    dist = {}
    for y in responses():
        step = dec.step_distribution(["x"] * len(y), [list(y[:t]) for t in range(len(y))])
        picks = [(step.candidates[t] == y[t]).nonzero().item() for t in range(len(y))]
        dist[y] = math.prod(float(step.probabilities[t, j]) for t, j in enumerate(picks))
    return dist


def total_variation(p, q) -> float:
    return 0.5 * sum(abs(p[y] - q[y]) for y in p)


def soft_value_exact(baseline_dist):
    """β · log E_{τ ~ ρ_BL(· | s, z)} exp((r − r_BL)/β), enumerated; 0 for an impossible z (prior 0)."""
    def value(s, z):
        if not responses((*s, z)):
            return 0.0
        return BETA * math.log(expectation(baseline_dist, (*s, z), lambda y: math.exp(
            (target_reward(text(y)) - baseline_reward(text(y))) / BETA)))
    return value


def test_soft_transfer_with_enumerated_expectation_is_exactly_rho_star():
    baseline_dist = aligned(REFERENCE, baseline_reward, BETA)
    baseline = TabularLM.from_distribution(baseline_dist)
    dist = response_distribution(decoder(baseline, FixedValue(soft_value_exact(baseline_dist)), 1 / BETA))
    assert total_variation(dist, RHO_STAR) < 1e-9


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-r_BL", "implicit-r_BL"])
def test_soft_transfer_converges_to_rho_star(implicit):
    baseline = TabularLM.from_distribution(aligned(REFERENCE, baseline_reward, BETA))
    extra = {"implicit_reference": REFERENCE} if implicit else {"baseline_reward": R_BL}
    tv = {n: total_variation(response_distribution(decoder(
        baseline, SoftTransferValue(rollout_spec(baseline, n, **extra)), 1 / BETA)), RHO_STAR) for n in (4, 4000)}
    assert tv[4000] < 0.02
    assert tv[4000] < tv[4] / 3


def test_rho_star_differs_from_reference():
    """Guard: the oracle problem is not trivial, so the tests above can fail."""
    assert total_variation(RHO_STAR, distribution_of(REFERENCE)) > 0.1
    assert responses()[-1][-1] == EOS and len(responses()) == 40


BOUNDED_R = CallableReward(lambda prompts, texts: [target_reward(t) for t in texts], "target", bounds=(-2.0, 5.0))
ALL_STATES = sorted({y[:t] for y in responses() for t in range(len(y))})  # every state a response passes


class CountingReward:
    """The bounded target reward, counting the responses it scores."""

    name, bounds = "target", (-2.0, 5.0)

    def __init__(self):
        self.scored = 0

    def score(self, prompts, texts):
        self.scored += len(texts)
        return BOUNDED_R.score(prompts, texts)


def pruning_decoder(estimator, alpha, prune):
    return ValueGuidedDecoder(proposal=REFERENCE, prior=REFERENCE, estimator=estimator,
                              settings=DecodingSettings(top_k=VOCAB, alpha=alpha, prune=prune))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 3.0])
@pytest.mark.parametrize("estimator", ["args", "tq-direct", "tq-indirect"])
def test_pruning_keeps_every_greedy_choice_and_skips_candidates_that_cannot_win(alpha, estimator):
    """At every state of the tree, the argmax of π_alg is the same with and without pruning, and the
    candidates left unvalued are exactly those whose prior trails by more than α·(hi − lo)."""
    baseline = TabularLM.random(seed=2)
    build = {"args": lambda r: PartialReward(REFERENCE, r),
             "tq-direct": lambda r: MeanRolloutValue(RolloutSpec(baseline, REFERENCE, r, horizon=None, temperature=0.0)),
             "tq-indirect": lambda r: IndirectValue(RolloutSpec(baseline, REFERENCE, r, num_rollouts=3, horizon=None,
                                                                temperature=1.0, baseline_reward=R_BL, beta=BETA,
                                                                generator=torch.Generator().manual_seed(0)))}[estimator]
    prompts, states = ["x"] * len(ALL_STATES), [list(s) for s in ALL_STATES]
    full_reward, pruned_reward = CountingReward(), CountingReward()
    full = pruning_decoder(build(full_reward), alpha, prune=False).step_distribution(prompts, states)
    pruned = pruning_decoder(build(pruned_reward), alpha, prune=True).step_distribution(prompts, states)
    prior = full.prior
    can_win = prior + alpha * 5.0 >= prior.max(-1, keepdim=True).values + alpha * -2.0 - 1e-6
    valued = ~pruned.values.isnan()
    assert (valued <= can_win).all() and (valued == (can_win & (can_win.sum(-1, keepdim=True) > 1))).all()
    choice = pruned.probabilities.argmax(-1)
    assert can_win.gather(1, choice[:, None]).all()
    if estimator != "tq-indirect":  # deterministic values: the same values wherever both exist, the same argmax
        assert pruned.values[valued] == pytest.approx(full.values[valued], abs=1e-12)
        assert choice.tolist() == full.probabilities.argmax(-1).tolist()
    assert pruned_reward.scored <= full_reward.scored
    if alpha == 0.0:
        assert pruned_reward.scored == 0  # the prior alone decides


def test_pruned_decoding_writes_the_same_responses():
    baseline = TabularLM.random(seed=2)
    spec = lambda: RolloutSpec(baseline, REFERENCE, BOUNDED_R, horizon=None, temperature=0.0)
    prompts = ["x"] * 3
    full = pruning_decoder(MeanRolloutValue(spec()), 0.5, prune=False).generate(prompts)
    pruned = pruning_decoder(MeanRolloutValue(spec()), 0.5, prune=True).generate(prompts)
    assert [r.token_ids for r in pruned] == [r.token_ids for r in full]


def test_repeated_rollout_texts_are_scored_once_with_the_same_values():
    """Sampled rollouts on the tiny tree repeat texts; each distinct text is scored once, values unchanged."""
    counting = CountingReward()
    spec = lambda reward: RolloutSpec(TabularLM.random(seed=2), REFERENCE, reward, num_rollouts=40, horizon=None,
                                      temperature=1.0, generator=torch.Generator().manual_seed(5))
    once = MeanRolloutValue(spec(counting)).estimate(all_candidates(STATES)).values
    every = MeanRolloutValue(spec(BOUNDED_R)).estimate(all_candidates(STATES)).values
    assert once == pytest.approx(every, abs=1e-12)
    assert counting.scored <= len(responses()) * len(STATES)  # distinct texts, not 40 × 12 rollouts
