"""Property-based fuzzing of every way input comes in: config files, eval method strings, prompt files,
the command line and the server's request bodies. Hypothesis writes the inputs (wrong types, NaN, huge
and tiny numbers, unicode with lone surrogates, bytes that are not UTF-8); the properties:

* options are refused with ``ConfigError`` or accepted finite and within their bounds, nothing else;
* the command line exits 0, or 2 with one line naming the problem, and never raises;
* the server answers 2xx, or 4xx with an OpenAI error body, never 5xx, and stays healthy;
* no NaN or infinity reaches an answer, a trace, a record or a config file.

A fixed, small example budget runs with the suite; TQSTAR_FUZZ_EXAMPLES=N runs N examples per property
with fresh random inputs (docs/reliability.md).
"""

import json
import math
import os
from dataclasses import asdict

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tqstar.cli import main
from tqstar.decoding import DecodeConfig, Roles, split_options
from tqstar.decoding.config import SIZE_BOUNDS
from tqstar.errors import ConfigError
from tqstar.eval.config import EvalConfig, method_specs
from tqstar.models import load_language_model
from tqstar.options import load_config_file
from tqstar.prompts import load_prompts
from tqstar.rewards import load_reward
from tqstar.serve import ServeConfig, create_app, serve_in_thread

LARGE = int(os.environ.get("TQSTAR_FUZZ_EXAMPLES", "0"))


def budget(default: int):
    """Hypothesis settings: ``default`` examples, the same ones every run, unless a large budget is asked."""
    return settings(max_examples=LARGE or default, derandomize=not LARGE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# ---- strategies ----------------------------------------------------------------------------------
SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udcff"])
TEXT = st.one_of(st.text(max_size=12), st.builds(lambda text, lone: text + lone, st.text(max_size=4), SURROGATES),
                 st.sampled_from(["", " ", "none", "eos", "true", "nan", "inf", "-1", "1e400", "2.5", "你好",
                                  "\x00"]))
NUMBERS = st.one_of(st.integers(-3, 4), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([5e-324, 1e-300, 1e300, 0.5, 2.0]))
VALUES = st.one_of(NUMBERS, TEXT, st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))
DECODE_NAMES = list(asdict(DecodeConfig()))
ROLE_NAMES = ["reference", "baseline", "reward", "baseline_reward", "device", "dtype"]
OPTION_NAMES = st.one_of(st.sampled_from(DECODE_NAMES + ROLE_NAMES), st.text(max_size=6))
METHOD_NAMES = st.sampled_from(["greedy", "sample", "best-of-n", "args", "cd", "tq-direct", "tq-indirect", "soft"])


def finite_everywhere(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_everywhere(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite_everywhere(v) for v in value)
    return True


def no_json_constants(text: str):
    """Parse JSON refusing NaN and ±Infinity, which Python's json writes but JSON does not have."""
    def refuse(name):
        raise AssertionError(f"{name} in {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def accepted_configs_are_sane(decode: DecodeConfig) -> None:
    assert finite_everywhere(asdict(decode))
    for name, bound in SIZE_BOUNDS.items():
        assert getattr(decode, name) is None or getattr(decode, name) <= bound


# ---- options: config files and eval method strings -----------------------------------------------
@budget(150)
@given(st.dictionaries(OPTION_NAMES, VALUES, max_size=4))
def test_any_option_mapping_is_refused_clearly_or_accepted_finite_and_bounded(values):
    try:
        decode, _ = split_options(values)
    except ConfigError as exc:
        assert str(exc).strip()
        return
    accepted_configs_are_sane(decode)


CONFIG_BYTES = st.one_of(
    st.dictionaries(OPTION_NAMES, VALUES, max_size=3).map(lambda d: json.dumps(d).encode()),
    st.lists(VALUES, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=30),
    st.sampled_from([b'{"alpha": NaN}', b'{"top_k": 1e999}', b"[" * 3000, b'{"top_k": "\\ud800"}',
                     b"top_k = nan", b"top_k = 2.5", b'method = "\xff"', b"[top_k]\nx = 1"]),
)


@budget(100)
@given(CONFIG_BYTES, st.sampled_from([".json", ".toml"]))
def test_any_config_file_is_refused_clearly_or_read_as_options(tmp_path, content, suffix):
    path = tmp_path / f"options{suffix}"
    path.write_bytes(content)
    try:
        decode, _ = split_options(load_config_file(path))
    except ConfigError as exc:
        assert str(exc).strip()
        return
    accepted_configs_are_sane(decode)


METHOD_STRINGS = st.builds(
    lambda name, pairs: name + (":" + ",".join(f"{k}={v}" for k, v in pairs) if pairs else ""),
    st.one_of(METHOD_NAMES, st.text(max_size=5)),
    st.lists(st.tuples(OPTION_NAMES, st.one_of(TEXT, NUMBERS.map(str))), max_size=3))


@budget(150)
@given(st.lists(METHOD_STRINGS, min_size=1, max_size=2), st.lists(st.text(max_size=12), max_size=1))
def test_any_eval_method_string_is_refused_clearly_or_parsed_finite_and_bounded(methods, sweep):
    try:
        specs = method_specs(EvalConfig(output="unused", methods=methods, sweep=sweep))
    except ConfigError as exc:
        assert str(exc).strip()
        return
    for spec in specs:
        accepted_configs_are_sane(spec.decode)
        assert json.dumps(spec.as_record(), allow_nan=False)


PROMPT_BYTES = st.one_of(
    st.lists(st.dictionaries(st.sampled_from(["prompt", "text"]), VALUES, max_size=2), max_size=3).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@budget(100)
@given(PROMPT_BYTES, st.sampled_from([".jsonl", ".json", ".csv"]))
def test_any_prompt_file_is_refused_clearly_or_read_as_unicode_prompts(tmp_path, content, suffix):
    path = tmp_path / f"prompts{suffix}"
    path.write_bytes(content)
    try:
        prompts = load_prompts(str(path))
    except ConfigError as exc:
        assert str(exc).strip()
        return
    assert prompts and all(isinstance(p, str) and p.strip() for p in prompts)
    "".join(prompts).encode("utf-8")  # every prompt is text a tokenizer and a JSON writer take


# ---- the command line ----------------------------------------------------------------------------
SMALL_FLAGS = {"--top-k": st.integers(-1, 3), "--horizon": st.sampled_from(["0", "2", "eos", "-1", "2.5"]),
               "--max-new-tokens": st.integers(-1, 2), "--num-rollouts": st.integers(-1, 3),
               "--best-of": st.integers(-1, 3), "--batch-size": st.integers(-1, 3)}
RISKY = st.one_of(TEXT, NUMBERS.map(str), st.sampled_from(["1e999", "-0", "1_000", "0x10", "NaN"]),
                  st.sampled_from([str(b + 1) for b in SIZE_BOUNDS.values()]))
FLAG_VALUES = st.one_of(
    st.sampled_from(list(SMALL_FLAGS)).flatmap(lambda flag: SMALL_FLAGS[flag].map(lambda v: [flag, str(v)])),
    st.tuples(st.sampled_from(["--alpha", "--beta", "--rollout-temperature", "--selection-temperature", "--seed",
                               "--top-k", "--horizon", "--selection", "--proposal", "--prior", "--method",
                               "--baseline-reward", "--config", "--trace"]), RISKY).map(list),
    st.sampled_from([["--compat"], ["--fixed-horizon"], ["--json"], ["--no-such-flag"], ["--compare"]]),
)


@pytest.fixture(scope="module")
def cli_base(tiny_model_dir):
    return ["--reference", str(tiny_model_dir), "--reward", "sentiment", "--quiet", "--max-new-tokens", "2",
            "--top-k", "2", "--horizon", "1"]


@budget(20)
@given(st.one_of(TEXT, st.binary(min_size=1, max_size=8).map(lambda b: b.decode("utf-8", "surrogateescape"))),
       st.lists(FLAG_VALUES, max_size=3), METHOD_NAMES)
def test_the_command_line_exits_0_or_2_with_one_line_and_writes_no_nan(capsys, monkeypatch, tmp_path, cli_base, prompt,
                                                                     flags, method):
    monkeypatch.chdir(tmp_path)  # a fuzzed --trace or --config names a relative path: keep it out of the checkout
    trace = tmp_path / "trace.jsonl"
    trace.unlink(missing_ok=True)
    argv = ["generate", prompt, *cli_base, "--method", method, "--json", "--trace", str(trace),
            *[part for flag in flags for part in flag]]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own exit
        status = exit_.code
    out, err = capsys.readouterr()
    event(f"exit {status}")
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("tqstar") and "error:" in lines[0], err
        return
    assert status == 0, err
    for line in out.splitlines():
        no_json_constants(line)
    if trace.is_file():
        for line in trace.read_text(encoding="utf-8").splitlines():
            no_json_constants(line)


# ---- the server ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    sentiment = load_reward("sentiment")
    roles = Roles(tiny, tiny, sentiment, baseline_reward=sentiment)
    config = ServeConfig(max_tokens=3, max_top_k=3, max_samples=2, max_logprobs=2, max_body_bytes=4096)
    running = serve_in_thread(create_app(config, roles, DecodeConfig(top_k=2, horizon=1, max_new_tokens=2),
                                         {str(tiny_model_dir): "reference"}))
    yield running
    running.close()


def mostly(good, hostile=VALUES):
    """Usually a plausible value, else anything: a body with one bad field is refused before the rest is read,
    so plausible values are what let the fuzzer reach decoding."""
    return st.integers(0, 7).flatmap(lambda draw: hostile if draw == 7 else good)  # shrinks to the plausible


MODEL_NAMES = mostly(st.one_of(
    METHOD_NAMES, METHOD_NAMES.map(lambda m: "tqstar/" + m), st.sampled_from(["tqstar", "reference", "baseline"]),
    st.tuples(METHOD_NAMES, st.lists(st.tuples(st.sampled_from(DECODE_NAMES), st.one_of(TEXT, NUMBERS.map(str))),
                                     max_size=2)).map(lambda t: t[0] + "?" + "&".join(f"{k}={v}" for k, v in t[1]))))
CONTENT = mostly(st.one_of(st.sampled_from(["Hi", "Say something kind.", "ok\ud800"]), st.text(min_size=1, max_size=8),
                           st.just([{"type": "text", "text": "Hi"}])))
PLAUSIBLE = {
    "temperature": st.sampled_from([0, 0.7, 1.0, 1e-300]), "max_tokens": st.integers(0, 3),
    "top_k": st.integers(1, 4), "alpha": st.floats(0, 5), "beta": st.sampled_from([0.1, 1.0, 5e-324]),
    "horizon": st.one_of(st.integers(0, 3), st.just("eos")), "num_rollouts": st.integers(1, 3),
    "rollout_temperature": st.sampled_from([0, 1.0, 1e-300]), "best_of": st.integers(1, 3), "compat": st.booleans(),
    "seed": st.integers(0, 9), "n": st.integers(1, 2), "stream": st.booleans(), "trace": st.booleans(),
    "logprobs": st.integers(0, 3), "echo": st.booleans(), "selection": st.sampled_from(["greedy", "sample"]),
    "method": METHOD_NAMES, "stream_options": st.just({"include_usage": True}), "top_p": st.just(1)}
REQUEST_FIELDS = st.lists(st.sampled_from(sorted(PLAUSIBLE)), max_size=3, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({name: mostly(PLAUSIBLE[name]) for name in names}))
BODIES = st.one_of(
    st.builds(lambda model, content, extra: {"model": model, "messages": [{"role": "user", "content": content}],
                                             **extra}, MODEL_NAMES, CONTENT, REQUEST_FIELDS),
    st.builds(lambda model, prompt, extra: {"model": model, "prompt": prompt, **extra}, MODEL_NAMES,
              mostly(st.one_of(CONTENT, st.lists(st.integers(-1, 60_000), min_size=1, max_size=3))), REQUEST_FIELDS),
)


def _send(server, body) -> httpx.Response:
    chat = "messages" in body
    # ensure_ascii keeps lone surrogates as \ud800 escapes; allow_nan writes the NaN a careless client sends
    content = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
    return httpx.post(f"{server.url}/{'chat/completions' if chat else 'completions'}", content=content,
                      headers={"Content-Type": "application/json"}, timeout=60)


@budget(40)
@given(BODIES)
def test_the_server_answers_2xx_or_an_openai_4xx_never_5xx_and_no_nan(fuzz_server, body):
    response = _send(fuzz_server, body)
    code = response.json()["error"]["code"] if response.status_code >= 400 else ""
    event(f"HTTP {response.status_code} {code}")  # --hypothesis-show-statistics: what got how far
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], response.text
        return
    if response.headers["content-type"].startswith("text/event-stream"):
        chunks = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        assert chunks[-1] == "[DONE]"
        for sent in chunks[:-1]:
            assert "error" not in no_json_constants(sent), sent
    else:
        no_json_constants(response.text)
    health = httpx.get(fuzz_server.url.removesuffix("/v1") + "/health", timeout=30).json()
    assert health["status"] == "ok" and health.get("failed", 0) == 0
