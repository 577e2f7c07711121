"""tqstar align on the tiny random Llama: pairs survive a kill, DPO trains, the adapter loads."""

import json

import pytest

from tqstar.align import AlignConfig, build_pairs, check_same_run, dev_source, run_align
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
    assert json.loads((out / "metadata.json").read_text())["pairs"] == metadata["pairs"]
    adapted = load_language_model(str(out.resolve()))
    assert adapted.vocabulary == load_language_model(str(tiny_model_dir)).vocabulary
