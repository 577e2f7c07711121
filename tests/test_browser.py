"""The playground and `tqstar trace view` pages in a real browser: Debian's headless Chromium driven by
Playwright through its executable path (no browser download). Skipped, with the reason, where Chromium or
Playwright is missing; `make test` (or `make chromium`) installs Chromium where apt-get runs as root.
Screenshots at 360 and 1440 px go to build/screenshots (or $TQSTAR_SCREENSHOTS)."""

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from tqstar.decoding import DecodeConfig, Roles
from tqstar.models import load_language_model
from tqstar.rewards import load_reward
from tqstar.serve import ServeConfig, create_app, serve_in_thread

CHROMIUM = os.environ.get("TQSTAR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed: 'make chromium' installs "
                                                     "Debian's chromium as root, or set TQSTAR_CHROMIUM to a Chromium "
                                                     "binary")
expect = playwright.expect
# No sandbox (tests run as root); no calls home, which a closed network refuses many times over.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path(os.environ.get("TQSTAR_SCREENSHOTS", Path(__file__).resolve().parents[1] / "build" / "screenshots"))
KEY = "browser-key"
INJECTION = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
DEFAULTS = DecodeConfig(top_k=3, horizon=2, max_new_tokens=6)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    sentiment = load_reward("sentiment")
    app = create_app(ServeConfig(api_key=KEY, max_tokens=64), Roles(tiny, tiny, sentiment, baseline_reward=sentiment),
                     DEFAULTS, {})
    running = serve_in_thread(app)
    running.root = running.url.removesuffix("/v1") + "/"
    yield running
    running.close()


def open_playground(page, server, key=KEY):
    page.goto(server.root)
    page.fill("#key", key)
    page.click("#key-form button")


def run(page, prompt, methods):
    expect(page.locator(".pg-column")).to_have_count(2)
    for column, method in zip(page.locator(".pg-column").all(), methods):
        column.locator("select").select_option(method)
    page.fill("#prompt", prompt)
    page.fill("#max-tokens", "6")
    page.click("#run")
    expect(page.locator(".pg-column[data-state=done]")).to_have_count(len(methods), timeout=60_000)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (360, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing spills sideways
        page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)


def shown_step(page, column) -> list[dict]:
    """The inspector's rows: each number as the page holds it (data-value)."""
    rows = []
    for row in column.locator("table.tq-step tbody tr").all():
        cells = []
        for cell in row.locator("td[data-value]").all():  # the weights cell holds a list: one per rollout
            value = json.loads(cell.get_attribute("data-value"))
            cells.extend(value if isinstance(value, list) else [value])
        rows.append({"chosen": "tq-chosen" in (row.get_attribute("class") or ""),
                     "candidate": int(row.get_attribute("data-candidate")), "numbers": cells})
    return rows


def expected_step(step) -> list[dict]:
    import math

    rows = []
    for i, candidate in enumerate(step["candidates"]):
        numbers = [math.exp(step["prior_logprobs"][i]), step["values"][i], step["probabilities"][i]]
        if step.get("ess"):
            numbers += [step["ess"][i], *step["weights"][i]]
        rows.append({"chosen": candidate == step["chosen"], "candidate": candidate, "numbers": numbers})
    return rows


def assert_same_step(shown, expected):
    assert [(r["chosen"], r["candidate"]) for r in shown] == [(r["chosen"], r["candidate"]) for r in expected]
    for got, want in zip(shown, expected):
        assert got["numbers"] == pytest.approx(want["numbers"], rel=1e-12, abs=1e-15)


def test_two_methods_side_by_side_and_a_tokens_inspector_equals_the_apis_trace(page, server):
    open_playground(page, server)
    run(page, "Say something kind.", ["tq-direct", "tq-indirect"])
    for index, method in enumerate(["tq-direct", "tq-indirect"]):
        column = page.locator(".pg-column").nth(index)
        column.locator(".tq-token[data-step='2']").click()
        expect(column.locator("table.tq-step")).to_be_visible()
        api = httpx.post(server.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                         json={"model": f"tqstar/{method}", "max_tokens": 6, "trace": True,
                               "messages": [{"role": "user", "content": "Say something kind."}]}).json()
        if method == "tq-direct":  # deterministic: the page's answer is the API's
            assert_same_step(shown_step(page, column), expected_step(api["tqstar"]["trace"][2]))
            assert column.locator(".pg-meta").text_content().startswith(f"reward {api['tqstar']['reward']:.4f}")
        else:  # sampled rollouts: the page shows its own weights and ESS, one per candidate
            rows = shown_step(page, column)
            assert len(rows) == 3 and all(len(r["numbers"]) == 3 + 1 + 4 for r in rows)  # and ESS, N = 4 weights
            assert sum(r["numbers"][2] for r in rows) == pytest.approx(1)
    token = page.locator(".pg-column").nth(0).locator(".tq-token[data-step='0']")
    token.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")  # the keyboard opens a step too
    expect(page.locator(".pg-column").nth(0).locator("h3")).to_contain_text("Step 2 of")
    shot(page, "playground")
    assert not page.errors


def test_injection_in_the_prompt_and_in_an_answer_shows_as_text(page, server):
    answer = {"choices": [{"delta": {"content": INJECTION}}]}
    step = {"position": 0, "candidates": [7, 8], "candidate_texts": [INJECTION, "x"], "prior_logprobs": [-1.0, -0.5],
            "values": [1.0, 0.0], "probabilities": [0.7, 0.3], "chosen": 7, "chosen_text": INJECTION}
    done = {"choices": [{"delta": {}, "finish_reason": "stop"}],
            "tqstar": {"method": "args", "reward": 1.0, "seconds": 0.1, "forward_tokens": 3, "trace": [step]}}
    stream = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in (answer, done)) + "data: [DONE]\n\n"
    open_playground(page, server)
    expect(page.locator(".pg-column")).to_have_count(2)
    # a model answering markup: the endpoint's answer is replaced by one holding it
    page.route("**/v1/chat/completions", lambda route: route.fulfill(status=200, body=stream,
                                                                      content_type="text/event-stream"))
    page.fill("#prompt", INJECTION)
    page.click("#run")
    expect(page.locator(".pg-column[data-state=done]")).to_have_count(2)
    page.locator(".tq-token[data-step='0']").first.click()
    assert page.locator(".tq-token[data-step='0']").first.text_content() == INJECTION
    assert page.locator("table.tq-step .tq-text").first.text_content() == json.dumps(INJECTION)
    assert page.input_value("#prompt") == INJECTION
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0
    assert page.evaluate("window.pwned") is None
    shot(page, "playground-injection")


def test_a_wrong_key_shows_the_apis_401_message(page, server):
    open_playground(page, server, key="wrong")
    message = page.locator("#key-message")
    expect(message).to_contain_text("401: Missing or wrong API key")
    assert page.locator("#key-form").is_visible() and not page.locator(".pg-column").count()
    shot(page, "playground-401")


def test_a_refused_request_shows_the_apis_422_message_in_its_column(page, server):
    open_playground(page, server)
    expect(page.locator(".pg-column")).to_have_count(2)
    page.locator(".pg-column").nth(1).locator("select").select_option("tq-direct")
    page.locator(".pg-column").nth(1).locator("input[name=top_k]").fill("999")
    page.click("#run")
    error = page.locator(".pg-column").nth(1).locator(".tq-error")
    expect(error).to_contain_text("422: top_k=999 is over the server's cap")
    expect(page.locator(".pg-column[data-state=done]")).to_have_count(1)


def test_trace_view_page_shows_the_trace_files_numbers_and_escapes_its_text(page, tmp_path, tiny_model_dir):
    from tqstar.cli import main

    tiny = load_language_model(str(tiny_model_dir))
    sentiment = load_reward("sentiment")
    from tqstar.decoding import build_decoder
    from tqstar.decoding.decoder import write_trace

    roles = Roles(tiny, tiny, sentiment, baseline_reward=sentiment)
    results = [build_decoder(DecodeConfig(method=m, top_k=3, horizon=2, max_new_tokens=5), roles).generate([INJECTION])[0]
               for m in ("tq-direct", "tq-indirect")]
    results[0].trace[1].candidate_texts[0] = results[0].trace[1].chosen_text = INJECTION  # text a model could write
    write_trace(results, tmp_path / "trace.jsonl", num_prompts=1)
    assert main(["trace", "view", str(tmp_path / "trace.jsonl"), "-o", str(tmp_path / "trace.html")]) == 0
    page.goto((tmp_path / "trace.html").as_uri())
    cards = page.locator(".tq-card")
    expect(cards).to_have_count(2)  # the prompt's two answers side by side
    steps = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    for index, method in enumerate(["tq-direct", "tq-indirect"]):
        cards.nth(index).locator(".tq-token[data-step='1']").click()
        step = [s for s in steps if s["method"] == method][1]
        assert_same_step(shown_step(page, cards.nth(index)), expected_step(step))
    assert cards.nth(0).locator(".tq-token[data-step='1']").text_content() == INJECTION
    assert page.locator("main img").count() == 0 and page.evaluate("window.pwned") is None
    shot(page, "trace-view")
    assert not page.errors
