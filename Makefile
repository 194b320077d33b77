# The project's verbs. Everything runs from a local virtual environment that the first target
# creates, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench
PEERS_STAMP := $(VENV)/.installed-peers

.PHONY: soak demo test bench bench-peers lint fmt docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamq demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The fault suite at its large sizes (make test runs the CI sizes).
soak: $(STAMP)
	STREAMQ_STORM_JOBS=100000 $(BIN)/python -m pytest tests/faults -p no:cacheprovider -s

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

$(PEERS_STAMP): $(BENCH_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,peers]'
	touch $(PEERS_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-enable --benchmark-only \
		--benchmark-json=benchmarks/results/latest.json -p no:randomly

lint: $(STAMP)
	$(BIN)/ruff check streamq handlers tests benchmarks
	$(BIN)/ruff format --check streamq handlers tests benchmarks
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format streamq handlers tests benchmarks
	$(BIN)/ruff check --fix streamq handlers tests benchmarks

# The CLI reference is generated from the typer app; tests/unit/test_cli_docs.py fails when
# docs/cli.md is stale.
docs: $(STAMP)
	$(BIN)/typer streamq._cli utils docs --name streamq --output docs/cli.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks

# The peers side by side (benchmarks/peers): streamq, streaq, taskiq, SAQ and arq on one server.
bench-peers: $(PEERS_STAMP)
	$(BIN)/python -m benchmarks.peers
