# The project's verbs. Everything runs from a local virtual environment that the first target
# creates, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BENCH_STAMP := $(VENV)/.installed-bench
PEERS_STAMP := $(VENV)/.installed-peers

.PHONY: soak demo test test-floor bench bench-peers lint fmt docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/streamq demo

test: $(STAMP)
	$(BIN)/python -m pytest

# The contract suite (and the CLI's tests, for typer's and rich's floors) on the lowest version
# of every runtime dependency that pyproject.toml declares (.ci/floors.py turns the floors into
# pip constraints), in a venv of its own made afresh each time: a floor is a version the code
# ran on. Not part of `test`: it builds a venv (about 3 minutes in all).
FLOOR_VENV ?= .venv-floor
test-floor:
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR_VENV)/bin/python .ci/floors.py > $(FLOOR_VENV)/floors.txt
	$(FLOOR_VENV)/bin/python -m pip install --quiet -c $(FLOOR_VENV)/floors.txt -e '.[dev]'
	$(FLOOR_VENV)/bin/python -m pip check
	@echo "test-floor: runtime dependencies at their floors:"
	@$(FLOOR_VENV)/bin/python -m pip freeze -r $(FLOOR_VENV)/floors.txt 2>/dev/null \
		| sed -n '/^## The following/q;p'
	# Two runs: the contract modules import helpers from their own conftest, which a run that
	# also starts from tests/integration would shadow with that directory's (both are `conftest`).
	$(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider -q tests/contract
	$(FLOOR_VENV)/bin/python -m pytest -p no:cacheprovider -q \
		tests/unit/test_cli_runner.py tests/integration/test_cli_commands.py

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
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache .mypy_cache .ruff_cache .benchmarks

# The peers side by side (benchmarks/peers): streamq, streaq, taskiq, SAQ and arq on one server.
bench-peers: $(PEERS_STAMP)
	$(BIN)/python -m benchmarks.peers
