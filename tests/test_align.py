"""tqstar align on the tiny random Llama: pairs survive a kill, DPO trains, the adapter loads, rounds of
on-policy DPO resume where they stopped."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import tqstar.align.run as align_run
from tqstar.align import (AlignConfig, build_pairs, check_same_run, dev_source, dpo_arguments, dpo_models, given_pairs,
                          round_prompts, run_align)
from tqstar.align.pairs import mixed_given_pairs
from tqstar.align.train import plain_model_dir
from tqstar.errors import ConfigError, RewardError
from tqstar.models import load_language_model
from tqstar.rewards import CallableReward

LENGTH = CallableReward(lambda prompts, responses: [len(r) / 10 for r in responses], "length")


def test_pairs_are_kept_across_a_killed_run(tiny_model_dir, tmp_path):
    config = AlignConfig(output=str(tmp_path), samples_per_prompt=3, max_new_tokens=6, min_margin=0.0)
    model = load_language_model(str(tiny_model_dir))
    prompts = ["Hi", "Tell me a joke.", "Name a fruit."]
    build_pairs(config, model, LENGTH, prompts[:2], progress=False)
    path = tmp_path / "pairs.jsonl"
    first_two = path.read_text()
    with open(path, "a") as f:
        f.write('{"prompt": "Name a fr')  # a record cut short by kill -9
    pairs = build_pairs(config, model, LENGTH, prompts, progress=False)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert path.read_text().startswith(first_two)
    assert [r["prompt"] for r in records] == prompts
    assert all(r["chosen_reward"] >= r["rejected_reward"] for r in records)
    assert len(pairs) == sum(not r["skipped"] for r in records)


def test_a_reward_failing_mid_run_keeps_the_pairs_made_before_it(tiny_model_dir, tmp_path):
    calls = []

    def flaky(prompts, responses):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("reward server unreachable")
        return [len(r) / 10 for r in responses]

    config = AlignConfig(output=str(tmp_path), samples_per_prompt=2, max_new_tokens=4, min_margin=0.0)
    model = load_language_model(str(tiny_model_dir))
    prompts = ["Hi", "Tell me a joke.", "Name a fruit."]
    with pytest.raises(RewardError, match="reward server unreachable"):
        build_pairs(config, model, CallableReward(flaky, "flaky"), prompts, progress=False)
    kept = (tmp_path / "pairs.jsonl").read_text().splitlines()
    assert [json.loads(line)["prompt"] for line in kept] == ["Hi"]
    build_pairs(config, model, LENGTH, prompts, progress=False)
    records = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert records[0] == json.loads(kept[0]) and [r["prompt"] for r in records] == prompts


def test_resuming_with_another_reward_or_reference_is_refused(tmp_path):
    check_same_run(AlignConfig(output=str(tmp_path), reward="sentiment"), tmp_path)
    check_same_run(AlignConfig(output=str(tmp_path), reward="sentiment", limit=50), tmp_path)  # more prompts: fine
    with pytest.raises(ConfigError, match="--reward 'sentiment' \\(now 'nontoxic'\\).*new --output"):
        check_same_run(AlignConfig(output=str(tmp_path), reward="nontoxic"), tmp_path)
    with pytest.raises(ConfigError, match="--reference 'smollm2'"):
        check_same_run(AlignConfig(output=str(tmp_path), reward="sentiment", reference="other"), tmp_path)


def test_dev_reward_is_measured_on_a_dev_split_never_on_the_training_file(tmp_path):
    prompts_file = tmp_path / "prompts.jsonl"
    prompts_file.write_text('{"prompt": "hi"}\n')
    assert dev_source(AlignConfig(output="x", prompts=str(prompts_file))) == "tqstar"
    assert dev_source(AlignConfig(output="x", prompts=str(prompts_file), dev_prompts="hh-rlhf")) == "hh-rlhf"
    assert dev_source(AlignConfig(output="x", prompts="hh-rlhf")) == "hh-rlhf"


@pytest.mark.parametrize("options, message", [
    ({"output": ""}, "--output"), ({"output": "x", "samples_per_prompt": 1}, "≥ 2"),
    ({"output": "x", "beta": 0}, "> 0"),
    ({"output": "x", "rounds": 0}, "rounds must be ≥ 1, got 0"),
    ({"output": "x", "rounds": 51}, r"rounds must be ≤ 50 \(each round samples and trains again.*Set rounds to 50"),
    ({"output": "x", "rounds": 2.5}, "rounds"),
    ({"output": "x", "prompts_per_round": 0}, "prompts_per_round must be ≥ 1"),
    ({"output": "x", "pairs_per_prompt": 1}, "given pairs only.*--pairs SOURCE"),
    ({"output": "x", "pairs": "tqstar", "pairs_per_prompt": 0}, "pairs_per_prompt must be ≥ 1"),
    ({"output": "x", "pairs": " "}, "pairs is empty.*--pairs tqstar"),
    ({"output": "x", "rounds": 2, "given_pairs_per_round": 4}, "sampled rounds.*--pairs SOURCE"),
    ({"output": "x", "pairs": "tqstar", "given_pairs_per_round": 4}, "--rounds ≥ 2 or --start-adapter"),
    ({"output": "x", "pairs": "tqstar", "start_adapter": "bl-sentiment"}, "--given-pairs-per-round N, or drop --pairs"),
    ({"output": "x", "pairs": "tqstar", "rounds": 2, "given_pairs_per_round": 0}, "given_pairs_per_round must be ≥ 1"),
])
def test_bad_align_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        AlignConfig(**options)


@pytest.mark.slow
def test_align_trains_an_adapter_that_loads_on_its_reference(tiny_model_dir, tmp_path):
    config = AlignConfig(output=str(tmp_path / "bl"), reference=str(tiny_model_dir), reward="sentiment",
                         limit=6, samples_per_prompt=3, max_new_tokens=8, min_margin=0.0, epochs=1,
                         batch_size=2, dev_limit=3)
    metadata = run_align(config, progress=False)
    out = tmp_path / "bl"
    assert metadata["beta"] == 0.1 and metadata["prompts"] == 6 and metadata["pairs"] >= 1
    assert metadata["curves"]["loss"] and (out / "loss.png").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    assert set(metadata["dev_reward"]) == {"reference", "adapter"}
    assert "rounds" not in metadata and not (out / "round-1").exists() and not (out / "dev_reward.png").exists()
    assert json.loads((out / "metadata.json").read_text())["pairs"] == metadata["pairs"]
    adapted = load_language_model(str(out.resolve()))
    assert adapted.vocabulary == load_language_model(str(tiny_model_dir)).vocabulary


def test_a_start_adapter_must_exist_and_be_made_on_the_reference(tmp_path):
    with pytest.raises(ConfigError, match="neither a shipped adapter \\(bl-helpful-harmless, bl-sentiment\\).*"
                                          "drop --start-adapter"):
        AlignConfig(output="x", start_adapter=str(tmp_path / "nothing"))
    with pytest.raises(ConfigError, match="made on 'smollm2', not on the reference 'other'.*--reference smollm2"):
        AlignConfig(output="x", reference="other", start_adapter="bl-sentiment")
    assert AlignConfig(output="x", start_adapter="bl-sentiment").start_adapter == "bl-sentiment"
    assert AlignConfig(output="x", reference="embedded", start_adapter="bl-sentiment")  # an alias of smollm2
    assert AlignConfig(output="x", start_adapter="bl-sentiment", pairs="tqstar", given_pairs_per_round=4).rounds == 1


@pytest.mark.slow
def test_a_run_with_a_start_adapter_samples_from_it_and_trains_it_further(tiny_model_dir, tmp_path, monkeypatch):
    first = tmp_path / "first"
    run_align(_rounds_config(tiny_model_dir, first, monkeypatch, rounds=1), progress=False)
    calls, loaded, out = [], [], tmp_path / "continued"
    load = align_run.load_language_model
    monkeypatch.setattr(align_run, "load_language_model", lambda spec: loaded.append(spec) or load(spec))
    _spy(monkeypatch, calls)
    metadata = run_align(_rounds_config(tiny_model_dir, out, monkeypatch, start_adapter=str(first)),
                         progress=False)
    assert calls[1] == ("train", "round-1", "first") and calls[3] == ("train", "round-2", "round-1")
    assert loaded[1] == str(first.resolve())  # round 1 samples from the start adapter, after the reference
    first_round = json.loads((out / "round-1" / "round.json").read_text())
    # ρ_ref is the plain reference: the continued adapter starts at a margin other than 0
    assert first_round["sampled_from"] == "first" and first_round["curves"]["margins"][0][1] != 0
    assert metadata["config"]["start_adapter"] == str(first)
    # the rounds are measured against the adapter they continue, not only the reference
    assert set(metadata["dev_reward"]) == {"reference", "start", "adapter"}
    assert metadata["dev_reward"]["start"]["n"] == metadata["dev_reward"]["reference"]["n"]


def test_each_round_takes_the_next_slice_of_the_prompts_shuffled_by_the_seed():
    prompts = [f"prompt {i}" for i in range(10)]
    config = AlignConfig(output="x", prompts_per_round=4, seed=3)
    slices = [round_prompts(config, prompts, r) for r in (1, 2, 3)]
    assert [len(s) for s in slices] == [4, 4, 4] and set(slices[0]).isdisjoint(slices[1])
    assert set().union(*slices) == set(prompts)  # 12 draws wrap around the 10 prompts
    again = AlignConfig(output="y", prompts_per_round=4, seed=3)
    assert slices == [round_prompts(again, prompts, r) for r in (1, 2, 3)]
    assert slices[0] != round_prompts(AlignConfig(output="x", prompts_per_round=4, seed=4), prompts, 1)
    assert round_prompts(AlignConfig(output="x"), prompts, 2) == prompts
    assert round_prompts(AlignConfig(output="x", prompts_per_round=20), prompts, 2) == prompts


def test_a_single_round_run_and_a_run_of_rounds_do_not_mix(tmp_path):
    single, rounds = tmp_path / "single", tmp_path / "rounds"
    single.mkdir()
    (single / "pairs.jsonl").write_text("")
    (rounds / "round-1").mkdir(parents=True)
    check_same_run(AlignConfig(output=str(single)), single)
    check_same_run(AlignConfig(output=str(rounds), rounds=3), rounds)
    check_same_run(AlignConfig(output=str(rounds), rounds=5), rounds)  # more rounds extend a run
    with pytest.raises(ConfigError, match="single-round.*--rounds 1"):
        check_same_run(AlignConfig(output=str(single), rounds=2), single)
    with pytest.raises(ConfigError, match="several rounds.*--rounds 2 or more"):
        check_same_run(AlignConfig(output=str(rounds)), rounds)
    with pytest.raises(ConfigError, match="--prompts-per-round None \\(now 8\\)"):
        check_same_run(AlignConfig(output=str(rounds), rounds=3, prompts_per_round=8), rounds)


def test_a_continued_adapter_trains_against_the_plain_reference(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    earlier = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                             LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in earlier.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)  # an adapter that changes the model
    earlier.save_pretrained(tmp_path / "round-1")
    policy, reference = dpo_models(str(tiny_model_dir), tmp_path / "round-1")
    assert isinstance(policy, PeftModel) and not isinstance(reference, PeftModel)
    assert list(policy.peft_config) == ["default"]  # no frozen copy of the adapter as ρ_ref
    trained = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n and torch.all(p == 0.5) for n, p in trained.items() if "lora_B" in n)
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert all(torch.equal(value, plain[key]) for key, value in reference.state_dict().items())
    tokens = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(policy(tokens).logits, reference(tokens).logits)
    assert dpo_models(str(tiny_model_dir))[1] is None  # a fresh adapter: TRL switches it off for ρ_ref


def _write_pairs(path, prompts=("p1", "p2", "p3"), per_prompt=3, heldout=1):
    rows = [{"prompt": prompt, "chosen": f"good {i}", "rejected": f"bad {i}", "split": "train"}
            for prompt in prompts for i in range(per_prompt)]
    rows += [{"prompt": "held", "chosen": "good", "rejected": "bad", "split": "heldout"}] * heldout
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_given_pairs_keep_a_seeded_draw_per_prompt_and_record_it(tmp_path):
    source = _write_pairs(tmp_path / "written.jsonl")
    every = given_pairs(AlignConfig(output="x", pairs=source), tmp_path)
    assert len(every) == 9 and all(pair["split"] == "train" for pair in every)  # held-out pairs stay out
    one = given_pairs(AlignConfig(output="x", pairs=source, pairs_per_prompt=1, seed=1), tmp_path)
    assert sorted(pair["prompt"] for pair in one) == ["p1", "p2", "p3"]
    assert [json.loads(line)["chosen"] for line in (tmp_path / "pairs.jsonl").read_text().splitlines()] == \
        [pair["chosen"] for pair in one]
    draws = {tuple(p["chosen"] for p in given_pairs(AlignConfig(output="x", pairs=source, pairs_per_prompt=1,
                                                                seed=seed), tmp_path)) for seed in range(6)}
    assert len(draws) > 1 and one == given_pairs(AlignConfig(output="x", pairs=source, pairs_per_prompt=1,
                                                             seed=1), tmp_path)
    with pytest.raises(ConfigError, match="lacks rejected"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
        given_pairs(AlignConfig(output="x", pairs=str(bad)), tmp_path)


def _rounds_config(tiny_model_dir, out, monkeypatch, **options):
    monkeypatch.setattr(align_run, "load_reward", lambda spec: LENGTH)  # sentiment ties on the tiny model's text
    options = {"rounds": 2, **options}
    return AlignConfig(output=str(out), reference=str(tiny_model_dir), reward="sentiment", limit=3,
                       samples_per_prompt=2, max_new_tokens=6, min_margin=0.0, epochs=1, batch_size=2,
                       dev_limit=2, **options)


def _spy(monkeypatch, calls):
    """Record which round folder each sampling and training call of run_align works in."""
    build, train = align_run.build_pairs, align_run.train_adapter

    def spy_build(config, model, reward, prompts, progress, folder, index):
        calls.append(("sample", folder.name, model.__class__.__name__))
        return build(config, model, reward, prompts, progress, folder, index)

    def spy_train(config, model_dir, pairs, folder, start_from):
        calls.append(("train", folder.name, start_from.name if start_from else None))
        return train(config, model_dir, pairs, folder, start_from)

    monkeypatch.setattr(align_run, "build_pairs", spy_build)
    monkeypatch.setattr(align_run, "train_adapter", spy_train)


@pytest.mark.slow
def test_two_rounds_sample_from_the_last_adapter_and_publish_the_final_one(tiny_model_dir, tmp_path, monkeypatch):
    out, calls, loaded = tmp_path / "bl", [], []
    load = align_run.load_language_model
    monkeypatch.setattr(align_run, "load_language_model", lambda spec: loaded.append(spec) or load(spec))
    _spy(monkeypatch, calls)
    metadata = run_align(_rounds_config(tiny_model_dir, out, monkeypatch, prompts_per_round=2),
                         progress=False)
    assert [c[:2] for c in calls] == [("sample", "round-1"), ("train", "round-1"), ("sample", "round-2"),
                                      ("train", "round-2")]
    assert calls[3][2] == "round-1"  # round 2 trains round 1's adapter further
    assert str((out / "round-1").resolve()) in loaded[:loaded.index(str((out / "round-2").resolve()))]
    rounds = metadata["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and [r["sampled_from"] for r in rounds] == ["reference", "round-1"]
    for result in rounds:
        dev = result["dev_reward"]
        assert dev["n"] == 2 and dev["interval"][0] <= dev["mean"] <= dev["interval"][1]
        assert result["seconds"]["total"] >= result["seconds"]["training"] > 0 and result["prompts"] == 2
        assert json.loads((out / f"round-{result['round']}" / "round.json").read_text())["pairs"] == result["pairs"]
    assert metadata["pairs"] == sum(r["pairs"] for r in rounds) and metadata["prompts"] == 3
    assert metadata["dev_reward"]["adapter"] == rounds[-1]["dev_reward"]
    margins = [json.loads((out / f"round-{r}" / "round.json").read_text())["curves"]["margins"] for r in (1, 2)]
    # ρ_ref is the reference in both rounds: a fresh adapter starts at margin 0, round 1's adapter does not
    assert margins[0][0][1] == 0 and margins[1][0][1] != 0
    steps = [step for step, _ in metadata["curves"]["loss"]]
    assert steps == sorted(set(steps)) and len(steps) > len(json.loads(
        (out / "round-1" / "round.json").read_text())["curves"]["loss"])
    final = (out / "adapter_model.safetensors").read_bytes()
    assert final == (out / "round-2" / "adapter_model.safetensors").read_bytes()
    assert final != (out / "round-1" / "adapter_model.safetensors").read_bytes()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    for png in ("loss.png", "margins.png", "dev_reward.png", "round-1/loss.png", "round-2/loss.png"):
        assert (out / png).is_file(), png
    assert not (out / "pairs.jsonl").exists() and json.loads((out / "metadata.json").read_text())["rounds"] == rounds
    load_language_model(str(out.resolve()))


@pytest.mark.slow
def test_given_pairs_train_round_one_and_later_rounds_sample_from_its_adapter(tiny_model_dir, tmp_path,
                                                                             monkeypatch):
    out, calls = tmp_path / "bl", []
    _spy(monkeypatch, calls)
    source = _write_pairs(tmp_path / "written.jsonl", prompts=("q1", "q2", "q3", "q4"))
    metadata = run_align(_rounds_config(tiny_model_dir, out, monkeypatch, pairs=source, pairs_per_prompt=2),
                         progress=False)
    assert [c[:2] for c in calls] == [("train", "round-1"), ("sample", "round-2"), ("train", "round-2")]
    first, second = metadata["rounds"]
    assert first["sampled_from"] == f"pairs {source}" and second["sampled_from"] == "round-1"
    assert first["pairs"] == 8 and first["prompts"] == 4 and first["skipped_ties"] == 0
    assert metadata["prompts"] == 4 + second["prompts"]  # the written prompts and the sampled ones
    calls.clear()
    assert run_align(_rounds_config(tiny_model_dir, out, monkeypatch, pairs=source, pairs_per_prompt=2),
                     progress=False)["rounds"] == metadata["rounds"] and calls == []


@pytest.mark.slow
def test_given_pairs_per_round_mixes_a_fresh_draw_of_them_into_later_rounds(tiny_model_dir, tmp_path, monkeypatch):
    out, trained = tmp_path / "bl", []
    train = align_run.train_adapter
    monkeypatch.setattr(align_run, "train_adapter", lambda config, model_dir, pairs, folder, start_from:
                        trained.append(pairs) or train(config, model_dir, pairs, folder, start_from))
    source = _write_pairs(tmp_path / "written.jsonl", prompts=("q1", "q2", "q3", "q4"))
    config = _rounds_config(tiny_model_dir, out, monkeypatch, pairs=source, pairs_per_prompt=2,
                            given_pairs_per_round=3)
    second = run_align(config, progress=False)["rounds"][1]
    mixed = [json.loads(line) for line in (out / "round-2" / "given_pairs.jsonl").read_text().splitlines()]
    round_one = {(p["prompt"], p["chosen"]) for p in trained[0]}
    assert len(mixed) == 3 and {(p["prompt"], p["chosen"]) for p in mixed} <= round_one  # drawn from round 1's
    sampled = trained[1][:-3]
    assert trained[1][-3:] == mixed and all("chosen_reward" in pair for pair in sampled)
    assert second["given_pairs"] == 3 and second["pairs"] == len(trained[1])
    assert second["skipped_ties"] == second["prompts"] - len(sampled)
    assert mixed_given_pairs(config, tmp_path, 2) == mixed  # a resumed round draws the same pairs
    assert mixed_given_pairs(config, tmp_path, 3) != mixed


@pytest.mark.slow
def test_a_continued_adapter_mixes_given_pairs_into_its_first_sampled_round(tiny_model_dir, tmp_path, monkeypatch):
    first, out, calls, trained = tmp_path / "first", tmp_path / "continued", [], []
    run_align(_rounds_config(tiny_model_dir, first, monkeypatch, rounds=1), progress=False)
    _spy(monkeypatch, calls)
    train = align_run.train_adapter
    monkeypatch.setattr(align_run, "train_adapter", lambda config, model_dir, pairs, folder, start_from:
                        trained.append(pairs) or train(config, model_dir, pairs, folder, start_from))
    source = _write_pairs(tmp_path / "written.jsonl", prompts=("q1", "q2", "q3", "q4"))
    run_align(_rounds_config(tiny_model_dir, out, monkeypatch, rounds=1, start_adapter=str(first), pairs=source,
                             given_pairs_per_round=3), progress=False)
    # round 1 samples from the start adapter (never trains on the given pairs alone) and mixes 3 of them in
    assert [c[:2] for c in calls] == [("sample", "continued"), ("train", "continued")]
    mixed = [json.loads(line) for line in (out / "given_pairs.jsonl").read_text().splitlines()]
    assert len(mixed) == 3 and trained[0][-3:] == mixed and all("chosen_reward" in p for p in trained[0][:-3])


class Killed(Exception):
    pass


@pytest.mark.slow
def test_a_run_killed_in_round_two_resumes_there_without_redoing_round_one(tiny_model_dir, tmp_path, monkeypatch):
    out, config = tmp_path / "bl", _rounds_config(tiny_model_dir, tmp_path / "bl", monkeypatch)
    train = align_run.train_adapter

    def killed_in_round_two(config, model_dir, pairs, folder, start_from):
        if start_from is not None:
            raise Killed()
        return train(config, model_dir, pairs, folder, start_from)

    with monkeypatch.context() as patch:
        patch.setattr(align_run, "train_adapter", killed_in_round_two)
        with pytest.raises(Killed):
            run_align(config, progress=False)
    round_one = {p.name: p.read_bytes() for p in (out / "round-1").iterdir() if p.is_file()}
    pairs_two = (out / "round-2" / "pairs.jsonl").read_text()
    assert "round.json" in round_one and pairs_two and not (out / "round-2" / "round.json").exists()
    calls = []
    _spy(monkeypatch, calls)
    metadata = run_align(config, progress=False)
    assert [c[:2] for c in calls] == [("sample", "round-2"), ("train", "round-2")]
    assert {p.name: p.read_bytes() for p in (out / "round-1").iterdir() if p.is_file()} == round_one
    assert (out / "round-2" / "pairs.jsonl").read_text() == pairs_two  # every prompt was paired before the kill
    assert [r["resumed"] for r in metadata["rounds"]] == [False, True]
    calls.clear()
    assert run_align(config, progress=False)["rounds"] == metadata["rounds"] and calls == []  # nothing redone
    with pytest.raises(ConfigError, match="several rounds"):
        run_align(AlignConfig(**{**config.__dict__, "rounds": 1}), progress=False)


def test_the_sft_weight_adds_the_chosen_answers_nll_to_dpo(tmp_path):
    plain = dpo_arguments(AlignConfig(output="x"), tmp_path)
    assert plain.loss_type == ["sigmoid"] and plain.loss_weights is None  # DPO alone by default
    mixed = dpo_arguments(AlignConfig(output="x", sft_weight=0.5), tmp_path)
    assert mixed.loss_type == ["sigmoid", "sft"] and mixed.loss_weights == [1.0, 0.5]


@pytest.mark.slow
def test_with_an_sft_weight_training_raises_the_chosen_answers_likelihood(tiny_model_dir, tmp_path):
    source = _write_pairs(tmp_path / "written.jsonl", prompts=("q1", "q2"), per_prompt=2)
    chosen_logps = {}
    for weight in (0.0, 5.0):
        config = AlignConfig(output=str(tmp_path / f"bl-{weight}"), reference=str(tiny_model_dir), reward="sentiment",
                             pairs=source, sft_weight=weight, learning_rate=5e-3, epochs=1, batch_size=2,
                             max_new_tokens=4, dev_limit=2)
        chosen_logps[weight] = run_align(config, progress=False)["curves"]["chosen_logps"]
    # TRL logs the policy's log-probability of the chosen answers at each step
    assert chosen_logps[5.0][-1][1] > chosen_logps[0.0][-1][1]
    assert (tmp_path / "bl-5.0" / "chosen_logps.png").is_file()


def test_a_run_started_before_an_option_existed_resumes_with_its_default(tmp_path):
    out = tmp_path / "bl"
    out.mkdir()
    check_same_run(AlignConfig(output=str(out)), out)
    started = json.loads((out / "run.json").read_text())
    del started["sft_weight"]  # as written before --sft-weight existed
    (out / "run.json").write_text(json.dumps(started))
    check_same_run(AlignConfig(output=str(out)), out)
    with pytest.raises(ConfigError, match="--sft-weight 0.0 \\(now 1.0\\)"):
        check_same_run(AlignConfig(output=str(out), sft_weight=1.0), out)


def test_checkpoints_name_their_base_model_by_an_absolute_path(tmp_path, monkeypatch):
    saved = []
    part = SimpleNamespace(save_pretrained=saved.append)
    monkeypatch.chdir(tmp_path)
    base = plain_model_dir(SimpleNamespace(model=part, tokenizer=part), Path("runs/bl"))
    assert Path(base).is_absolute() and Path(base) == tmp_path / "runs/bl/base-model" and len(saved) == 2


def test_align_prints_the_start_adapters_dev_reward_beside_the_reference_and_the_result():
    from tqstar.cli import align_summary

    def measured(mean):
        return {"mean": mean, "stdev": 1.0, "n": 32, "interval": [mean - 0.3, mean + 0.3]}

    metadata = {
        "pairs": 381, "dev_reward": {"reference": measured(4.47), "start": measured(4.56), "adapter": measured(4.71)},
        "rounds": [{"round": 1, "pairs": 192, "dev_reward": measured(4.45), "seconds": {"total": 2076.0}}]}
    lines = align_summary(metadata, "runs/bl").splitlines()
    assert lines[0] == ("381 pairs; dev reward (greedy, n=32): reference 4.4700 ± 1.0000, start adapter 4.5600 ± "
                        "1.0000, adapter 4.7100 ± 1.0000. Saved to runs/bl")
    assert lines[1] == "  round 1: 192 pairs, dev reward 4.4500 (95% interval 4.1500 to 4.7500), 34.6 min"
