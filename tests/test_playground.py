"""The playground's page and files at / of tqstar serve: served without the key (they hold no data) but
only from a fixed list, under a Content-Security-Policy that runs only the server's own scripts; the API
behind them keeps its key; /v1/models tells the page each method's options. (The page itself runs in a real
browser in tests/test_browser.py.)"""

import http.client
import re

import httpx
import pytest

from tqstar.audit.page import static_text
from tqstar.decoding import DecodeConfig, Roles
from tqstar.decoding.methods import METHOD_TABLE
from tqstar.models import load_language_model
from tqstar.rewards import load_reward
from tqstar.serve import ServeConfig, create_app, serve_in_thread
from tqstar.serve.playground import FILES


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    app = create_app(ServeConfig(api_key="sekret"), Roles(tiny, tiny, load_reward("sentiment")),
                     DecodeConfig(top_k=3, horizon=2), {})
    running = serve_in_thread(app)
    running.root = running.url.removesuffix("/v1")
    yield running
    running.close()


def test_the_page_and_its_files_need_no_key_and_allow_only_the_servers_scripts(server):
    page = httpx.get(server.root + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    for name in re.findall(r'(?:src|href)="static/([^"]+)"', page.text):
        answer = httpx.get(f"{server.root}/static/{name}")
        assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff", name
    assert set(re.findall(r'(?:src|href)="static/([^"]+)"', page.text)) == set(FILES)


@pytest.mark.parametrize("path", ["/static/playground.html", "/static/app.py", "/metrics",
                                  "/v1/models", "/health"])
def test_everything_else_still_needs_the_key(server, path):
    assert httpx.get(server.root + path).status_code in (401, 404)
    assert httpx.get(server.root + path).status_code != 200


@pytest.fixture(scope="module")
def keyless(tiny_model_dir):
    tiny = load_language_model(str(tiny_model_dir))
    running = serve_in_thread(create_app(ServeConfig(), Roles(tiny, tiny, load_reward("sentiment")),
                                         DecodeConfig(top_k=3, horizon=2), {}))
    yield running
    running.close()


@pytest.mark.parametrize("path", ["/static/../config.py", "/static/%2e%2e/config.py", "/static/..%2fconfig.py",
                                  "/static/..%2Fapp.py", "/static/%2e%2e%2fconfig.py", "/static/..%5capp.py",
                                  "/static/.%2e/.%2e/tqstar/serve/app.py", "/static/%252e%252e%252fapp.py"])
def test_a_path_that_climbs_out_of_static_serves_no_file_even_without_a_key(keyless, path):
    # http.client sends the path as written: httpx would resolve '..' before it left the client
    host, port = keyless.url.removeprefix("http://").removesuffix("/v1").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read().decode("utf-8", "replace")
    finally:
        connection.close()
    assert answer.status == 404, body
    assert "import" not in body and "def " not in body


def test_a_post_to_the_page_needs_the_key(server):
    assert httpx.post(server.root + "/", json={}).status_code == 401


def test_models_tell_each_methods_own_options_with_the_servers_defaults(server):
    cards = httpx.get(server.url + "/models", headers={"Authorization": "Bearer sekret"}).json()["data"]
    knobs = {c["tqstar"]["method"]: c["tqstar"]["options"] for c in cards if "tqstar" in c}
    assert set(knobs) == {m.name for m in METHOD_TABLE}
    assert knobs["tq-direct"] == {"top_k": 3, "alpha": 10.0, "horizon": 2}
    assert knobs["tq-indirect"]["num_rollouts"] == 4 and "beta" in knobs["soft"] and knobs["greedy"] == {}


def test_no_playground_script_writes_markup():
    from importlib import resources

    script = (resources.files("tqstar.serve") / "static" / "playground.js").read_text()
    for text in (script, static_text("inspector.js")):
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", text)
