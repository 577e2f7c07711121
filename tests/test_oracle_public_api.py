"""The estimators' preconditions, checked against the exact tabular oracle through the public API only
(``DecodeConfig``, ``Roles``, ``build_decoder``, ``step_distribution``, ``generate``, the metrics)."""

import math

import pytest
import torch

from tabular import EOS, VOCAB, TabularLM, aligned, distribution_of, responses, text
from test_oracle import (BETA, R, R_BL, REFERENCE, baseline_reward, best_of_n_value, exact_table, greedy_completion,
                         q_star, target_reward)
from tqstar import DecodeConfig, GenerationResult, Roles, build_decoder, generate
from tqstar.decoding import METHODS
from tqstar.errors import ConfigError
from tqstar.models import Continuation
from tqstar.eval import KL_BEST_OF_N, KL_STEPWISE, best_of_n_kl, response_kls

STATES = [(), (1,), (2, 3)]
BASELINE = TabularLM.from_distribution(aligned(REFERENCE, baseline_reward, BETA))  # ρ*_{r_BL}


class UserLM:
    """A user's own model written against the ``LanguageModel`` protocol alone (not ``tests/tabular.py``):
    next-token probabilities from a function of the state, sampled token by token."""

    vocabulary, eos_token_ids, max_length, name = "user-abc", frozenset({EOS}), 64, "user"
    forward_tokens = 0

    def __init__(self, probabilities):
        self.probabilities = probabilities  # state tuple -> (V,) float64 tensor

    def encode_prompt(self, prompt):
        return []

    def encode(self, s):
        return ["abc".index(ch) + 1 for ch in s]

    def decode(self, ids):
        return text(ids)

    def next_token_logprobs(self, prefixes):
        return torch.stack([self.probabilities(tuple(p)) for p in prefixes]).clamp_min(1e-300).log()

    def continuation_logprobs(self, prefixes, continuations):
        return [[self._logprob(tuple(p), c, 1.0) for c in group] for p, group in zip(prefixes, continuations)]

    def _logprob(self, prefix, tokens, temperature):
        states = [(*prefix, *tokens[:i]) for i in range(len(tokens))]
        return sum(float(torch.log_softmax(self.next_token_logprobs([s])[0] / temperature, 0)[z])
                   for s, z in zip(states, tokens))

    def sample_continuations(self, prefixes, branches, num_samples, max_new_tokens, temperature, generator=None):
        limits = [max_new_tokens] * len(prefixes) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        return [[[self._draw(tuple(p), z, limit, temperature, generator) for _ in range(num_samples)]
                 for z in (row if branches is not None else [None])]
                for p, row, limit in zip(prefixes, branches or [None] * len(prefixes), limits)]

    def _draw(self, prefix, branch, limit, temperature, generator):
        tokens, sampled = ([branch], 0.0) if branch is not None else ([], 0.0)
        limit += len(tokens) if branch is not None else 1
        while (not tokens or tokens[-1] != EOS) and len(tokens) < limit and len(prefix) + len(tokens) < 4:
            q = torch.softmax(self.next_token_logprobs([(*prefix, *tokens)])[0] / max(temperature, 1e-6), 0)
            tokens.append(int(torch.multinomial(q, 1, generator=generator)) if temperature else int(q.argmax()))
            sampled += math.log(q[tokens[-1]]) if temperature else 0.0
        head = self._logprob(prefix, tokens[:1], 1.0) if branch is not None else 0.0
        return Continuation(tuple(tokens), self._logprob(prefix, tokens, 1.0), head + sampled)


USER_REFERENCE, USER_BASELINE = UserLM(REFERENCE.table.__getitem__), UserLM(BASELINE.table.__getitem__)


def transfer_roles(**extra) -> Roles:
    return Roles(REFERENCE, BASELINE, R, **({"baseline_reward": R_BL} | extra))


def values(method: str, roles: Roles, states=STATES, **options) -> torch.Tensor:
    config = DecodeConfig(method=method, top_k=VOCAB, horizon=None, beta=BETA, **options)
    step = build_decoder(config, roles).step_distribution(["x"] * len(states), [list(s) for s in states])
    order = step.candidates.argsort(-1)  # candidates come ranked by the proposal; compare by token id
    return step.values.gather(1, order)


def test_indirect_transfer_differs_from_direct_when_the_baseline_reward_differs():
    direct = values("tq-direct", transfer_roles(), num_rollouts=400, rollout_temperature=1.0, seed=1)
    indirect = values("tq-indirect", transfer_roles(), num_rollouts=400, seed=1)  # defaults: sampled, weighted
    assert float((indirect - direct).abs().max()) > 0.3
    exact = exact_table(q_star, STATES)
    assert float((indirect - exact).abs().max()) < float((direct - exact).abs().max())


@pytest.mark.parametrize("method, rollout_model", [("cd", REFERENCE), ("tq-direct", BASELINE)])
def test_the_best_of_n_rollouts_values_best_of_n_of_the_method_s_rollout_model(method, rollout_model):
    config = DecodeConfig(method=method, top_k=VOCAB, horizon=None, num_rollouts=3, rollout_temperature=1.0,
                          rollout_value="best")
    repeats = 3000
    step = build_decoder(config, transfer_roles()).step_distribution(["x"] * len(STATES) * repeats,
                                                                     [list(s) for s in STATES] * repeats)
    averaged = step.values.gather(1, step.candidates.argsort(-1)).view(repeats, len(STATES), VOCAB).mean(0)
    exact = exact_table(lambda s, z: best_of_n_value(distribution_of(rollout_model), (*s, z), 3), STATES)
    assert float((averaged - exact).abs().max()) < 0.05


@pytest.mark.parametrize("method, rollout_model", [("cd", REFERENCE), ("tq-direct", BASELINE)])
def test_after_the_sampled_steps_a_candidate_is_valued_by_the_greedy_rollout_of_the_method_s_model(method,
                                                                                                  rollout_model):
    states = [(), (3,), (2, 3)]  # after "c" the two models' greedy completions differ
    estimate = values(method, transfer_roles(), states, num_rollouts=4, rollout_temperature=1.0, sampled_steps=1)
    greedy = exact_table(lambda s, z: target_reward(text(greedy_completion(rollout_model, (*s, z)))), states)
    assert estimate[1:] == pytest.approx(greedy[1:], abs=1e-12)  # states with 1 and 2 response tokens


@pytest.mark.parametrize("method", ["tq-indirect", "soft"])
@pytest.mark.parametrize("options, message", [({"num_rollouts": 1}, "num_rollouts=1"),
                                              ({"rollout_temperature": 0}, "rollout_temperature=0")])
def test_weighted_estimators_refuse_rollouts_that_cannot_transfer(method, options, message):
    with pytest.raises(ConfigError, match=message):
        build_decoder(DecodeConfig(method=method, **options), transfer_roles())


@pytest.mark.parametrize("temperature", [0.7, 1.5])
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit-r_BL", "implicit-r_BL"])
def test_tempered_indirect_transfer_converges_to_q_star(temperature, implicit):
    roles = transfer_roles(implicit=True, baseline_reward=None) if implicit else transfer_roles()
    estimate = values("tq-indirect", roles, num_rollouts=20000, rollout_temperature=temperature)
    assert float((estimate - exact_table(q_star, STATES)).abs().max()) < 0.05  # uncorrected weights miss by > 0.1


@pytest.mark.parametrize("temperature", [0.7, 1.5])
def test_tempered_soft_transfer_value_converges_to_its_exact_log_mean_exp(temperature):
    baseline_dist = aligned(REFERENCE, baseline_reward, BETA)

    def exact(s, z):
        ys = [y for y in responses((*s, z))]
        mass = sum(baseline_dist[y] for y in ys)
        return BETA * math.log(sum(baseline_dist[y] * math.exp((target_reward(text(y)) - baseline_reward(text(y)))
                                                                 / BETA) for y in ys) / mass)

    estimate = values("soft", transfer_roles(), num_rollouts=20000, rollout_temperature=temperature)
    assert float((estimate - exact_table(exact, STATES)).abs().max()) < 0.05


class LimitRecorder(TabularLM):
    """The tabular model, remembering the rollout limits it was asked for."""

    def sample_continuations(self, prefixes, branches, num_samples, max_new_tokens, temperature, generator=None):
        self.limits = list(max_new_tokens)
        return super().sample_continuations(prefixes, branches, num_samples, max_new_tokens, temperature, generator)


@pytest.mark.parametrize("horizon, fixed, expected", [
    (8, False, [2, 1, 0]),  # the response budget binds: max_new_tokens 3 minus the tokens so far minus z
    (None, False, [2, 1, 0]),  # 'eos' runs to the budget, not to the model's context
    (8, True, [8, 8, 8]),  # the paper's fixed horizon
])
def test_rollout_horizon_of_a_row_does_not_depend_on_its_batch_mates(horizon, fixed, expected):
    model = LimitRecorder(REFERENCE.table)
    decoder = build_decoder(DecodeConfig(method="cd", top_k=2, horizon=horizon, fixed_horizon=fixed, max_new_tokens=3),
                            Roles(model, model, R))
    decoder.step_distribution(["x"] * 3, [[], [1], [2, 3]])
    assert model.limits == expected  # one limit per state, shared by its candidates
    for row, state in enumerate([[], [1], [2, 3]]):
        decoder.step_distribution(["x"], [state])
        assert model.limits == [expected[row]]


def test_compat_keeps_the_dpo_beta_of_an_implicit_baseline_reward():
    config = DecodeConfig(method="tq-indirect", compat=True)
    implicit = build_decoder(config, Roles(REFERENCE, BASELINE, R, implicit=True, baseline_beta=0.1))
    explicit = build_decoder(config, transfer_roles())
    assert (implicit.estimator.spec.beta, explicit.estimator.spec.beta) == (0.1, 2.0)


def test_soft_transfer_proposes_from_the_baseline():
    decoder = build_decoder(DecodeConfig(method="soft", top_k=2), transfer_roles())
    assert decoder.proposal is BASELINE and decoder.prior is BASELINE
    step = decoder.step_distribution(["x"], [[]])
    assert step.candidates[0].tolist() == BASELINE.table[()].topk(2).indices.tolist()


# ---- KL to the reference: each method's estimator against its exact value ----------------------

def tempered(model: TabularLM, temperature: float) -> dict:
    return {y: math.exp(model.logprob((), y, temperature)) for y in responses()}


@pytest.mark.parametrize("method, proposal, temperature", [
    ("greedy", "baseline", 1.0), ("sample", "baseline", 0.7), ("sample", "reference", 1.6), ("greedy", "reference", 1.0),
])
def test_sampling_kl_is_stepwise_exact_and_sums_to_the_sequence_kl(method, proposal, temperature):
    """E_{y~q}[Σ_t KL(q_t ‖ ρ_ref,t)] = KL(q ‖ ρ_ref) over whole responses (the chain rule), enumerated."""
    model = BASELINE if proposal == "baseline" else REFERENCE
    config = DecodeConfig(method=method, proposal=proposal, selection_temperature=temperature)
    q = tempered(model, temperature)
    results = [GenerationResult("x", text(y), list(y), method) for y in responses()]
    kls, estimator = response_kls(results, config, transfer_roles())
    reference = distribution_of(REFERENCE)
    exact = sum(q[y] * (math.log(q[y]) - math.log(reference[y])) for y in responses() if q[y] > 0)
    assert estimator == KL_STEPWISE
    assert sum(q[y] * kl for y, kl in zip(responses(), kls)) == pytest.approx(exact, abs=1e-9)


@pytest.mark.parametrize("prior, selection", [("reference", "greedy"), ("baseline", "sample"), ("baseline", "greedy")])
def test_value_guided_kl_is_the_exact_stepwise_kl_of_the_distribution_chosen_from(prior, selection):
    config = DecodeConfig(method="args", top_k=3, alpha=2.0, prior=prior, selection=selection,
                          selection_temperature=0.6, max_new_tokens=3)
    result = build_decoder(config, transfer_roles()).generate(["x"])[0]
    kls, estimator = response_kls([result], config, transfer_roles())
    prior_model, expected = (REFERENCE if prior == "reference" else BASELINE), 0.0
    for t, step in enumerate(result.trace):
        state = tuple(result.token_ids[:t])
        logits = torch.tensor([math.log(prior_model.table[state][z]) + 2.0 * target_reward(text((*state, z)))
                               for z in step.candidates], dtype=torch.float64)
        pi = torch.softmax(logits / (0.6 if selection == "sample" else 1.0), 0)
        assert step.probabilities == pytest.approx(pi.tolist(), abs=1e-12)  # the trace holds what was sampled
        expected += sum(float(p) * (math.log(p) - math.log(REFERENCE.table[state][z]))
                        for p, z in zip(pi, step.candidates))
    assert estimator == KL_STEPWISE and kls[0] == pytest.approx(expected, abs=1e-9)


def test_best_of_n_kl_is_the_named_analytic_bound():
    result = GenerationResult("x", "a", [1, EOS], "best-of-n")
    kls, estimator = response_kls([result], DecodeConfig(method="best-of-n", best_of=4), transfer_roles())
    assert (kls, estimator) == ([math.log(4) - 3 / 4], KL_BEST_OF_N) and best_of_n_kl(1) == 0.0


def test_a_users_own_model_passes_the_checks_through_the_public_api():
    roles = Roles(USER_REFERENCE, USER_BASELINE, R, baseline_reward=R_BL)
    for method in METHODS:
        config = DecodeConfig(method=method, top_k=3, max_new_tokens=3, beta=BETA, best_of=2, seed=2)
        result = generate(["x"], config, roles)[0]
        kls, estimator = response_kls([result], config, roles)
        assert math.isfinite(result.reward) and math.isfinite(kls[0]) and kls[0] >= -1e-12
        assert estimator == (KL_BEST_OF_N if method == "best-of-n" else KL_STEPWISE)
    direct = values("tq-direct", roles, num_rollouts=300, rollout_temperature=1.0)
    indirect = values("tq-indirect", roles, num_rollouts=300, rollout_temperature=0.8)
    exact = exact_table(q_star, STATES)
    assert float((indirect - direct).abs().max()) > 0.2
    assert float((indirect - exact).abs().max()) < float((direct - exact).abs().max())
    with pytest.raises(ConfigError, match="num_rollouts=1"):
        build_decoder(DecodeConfig(method="tq-indirect", num_rollouts=1), roles)
