"""The transformers backend: cached and fanned-out computations equal plain full forward passes."""

import pytest
import torch

from tqstar.errors import ModelLoadError
from tqstar.models import HFLanguageModel, load_language_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_language_model(str(tiny_model_dir))


def full_logprobs(lm: HFLanguageModel, ids) -> torch.Tensor:
    with torch.inference_mode():
        return torch.log_softmax(lm.model(torch.tensor([ids])).logits[0].float(), -1)


def test_next_token_logprobs_match_full_forward_across_padding_and_extension(tiny):
    a = tiny.encode_prompt("How do I boil an egg?")
    b = tiny.encode_prompt("Hi")
    batch = tiny.next_token_logprobs([a, b])
    assert batch[0] == pytest.approx(full_logprobs(tiny, a)[-1], abs=1e-4)
    assert batch[1] == pytest.approx(full_logprobs(tiny, b)[-1], abs=1e-4)
    extended = tiny.next_token_logprobs([a + [42], b + [7]])  # reuses the cache
    assert extended[1] == pytest.approx(full_logprobs(tiny, b + [7])[-1], abs=1e-4)
    subset = tiny.next_token_logprobs([a + [42, 9]])  # one row finished, the other goes on
    assert subset[0] == pytest.approx(full_logprobs(tiny, a + [42, 9])[-1], abs=1e-4)


def test_prefixes_grown_by_several_tokens_reuse_the_cache_and_equal_a_fresh_encode(tiny):
    """A block commit grows each prefix by m ≥ 0 tokens, m per row: only those tokens run, and the rows a
    longer batch-mate left with masked gaps extend correctly again."""
    a, b = tiny.encode_prompt("How do I boil an egg?"), tiny.encode_prompt("Hi")
    tiny.next_token_logprobs([a, b])
    steps = [([a + [42, 9, 17], b + [7], a], 3 + 1 + 0),  # a is asked twice: once grown, once as it was
             ([a + [42, 9, 17, 5], b + [7, 8, 9, 10], a + [3, 4]], 1 + 3 + 2)]
    for grown, new_tokens in steps:
        before = tiny.forward_tokens
        out = tiny.next_token_logprobs(grown)
        assert tiny.forward_tokens - before == new_tokens
        for row, ids in zip(out, grown):
            assert row == pytest.approx(full_logprobs(tiny, ids)[-1], abs=1e-4)
    scores = tiny.continuation_logprobs([grown[1]], [[[11, 12]]])[0][0]  # later calls read the gapped cache
    lp = full_logprobs(tiny, grown[1] + [11, 12])
    assert scores == pytest.approx(float(lp[len(grown[1]) - 1, 11] + lp[len(grown[1]), 12]), abs=1e-3)


def test_greedy_rollouts_equal_generate_and_report_their_logprob(tiny):
    prefix = tiny.encode_prompt("Name a colour.")
    branches = tiny.next_token_logprobs([prefix])[0].topk(3).indices.tolist()
    out = tiny.sample_continuations([prefix], [branches], 1, 6, 0.0)
    for j, z in enumerate(branches):
        rollout = out[0][j][0]
        expected = tiny.model.generate(torch.tensor([prefix + [z]]), max_new_tokens=6, do_sample=False,
                                       pad_token_id=tiny.pad_token_id)[0, len(prefix):].tolist()
        assert list(rollout.tokens) == expected[:len(rollout.tokens)]
        lp = full_logprobs(tiny, prefix + list(rollout.tokens))
        exact = sum(float(lp[len(prefix) - 1 + i, t]) for i, t in enumerate(rollout.tokens))
        assert rollout.logprob == pytest.approx(exact, abs=1e-3)


def test_rows_that_finish_early_leave_the_batch_without_changing_the_others(tiny):
    """Rows that stop (here: at their own, shorter limit) are dropped from the rollout batch; every row's
    greedy rollout and log-prob still equal that prefix decoded alone."""
    prefixes = [tiny.encode_prompt(p) for p in ("Name a colour.", "Hi", "Count to three.", "Say yes.")]
    limits = [1, 1, 1, 7]  # three quarters of the rows finish after one token, one goes on
    branches = [tiny.next_token_logprobs([p])[0].topk(2).indices.tolist() for p in prefixes]
    together = tiny.sample_continuations(prefixes, branches, 1, limits, 0.0)
    for prefix, row_branches, limit, row in zip(prefixes, branches, limits, together):
        alone = tiny.sample_continuations([prefix], [row_branches], 1, limit, 0.0)[0]
        for mine, reference in zip(row, alone):
            assert mine[0].tokens == reference[0].tokens and len(mine[0].tokens) <= limit + 1
            assert mine[0].logprob == pytest.approx(reference[0].logprob, abs=1e-3)


def test_sampled_rollouts_have_requested_shape_and_seeded_repeatability(tiny):
    prefixes = [tiny.encode_prompt("Tell me a joke."), tiny.encode_prompt("Count to three.")]
    draw = lambda: tiny.sample_continuations(prefixes, [[5, 6], [7, 8]], 3, 4, 1.0, torch.Generator().manual_seed(3))
    first, second = draw(), draw()
    assert [[len(branch) for branch in row] for row in first] == [[3, 3], [3, 3]]
    assert all(branch[0].tokens[0] == z for row, zs in zip(first, [[5, 6], [7, 8]]) for branch, z in zip(row, zs))
    assert all(len(c.tokens) <= 5 for row in first for branch in row for c in branch)
    assert first == second


def test_continuation_logprobs_match_full_forward(tiny):
    prefix = tiny.encode_prompt("Say hello.")
    conts = [[11, 12, 13], [14], [15, 16]]
    scores = tiny.continuation_logprobs([prefix], [conts])[0]
    for cont, score in zip(conts, scores):
        lp = full_logprobs(tiny, prefix + cont)
        assert score == pytest.approx(sum(float(lp[len(prefix) - 1 + i, t]) for i, t in enumerate(cont)), abs=1e-3)


def test_peft_adapter_directory_loads_on_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path)
    adapted = load_language_model(str(tmp_path))
    plain = load_language_model(str(tiny_model_dir))
    prompt = adapted.encode_prompt("Hi")
    assert not torch.allclose(adapted.next_token_logprobs([prompt]), plain.next_token_logprobs([prompt]))


@pytest.mark.parametrize("spec, message", [
    ("./no/such/model", "does not exist"),
    ("missing-file.gguf", "does not exist"),
])
def test_missing_model_is_a_clear_error(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_language_model(spec)


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_language_model(str(broken))


def test_directory_without_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_language_model(str(tmp_path))
