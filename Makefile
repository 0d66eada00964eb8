# govloop: `make demo` and `make test` work on a machine with only Python 3.11+ and pip.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint unit bench-sdk up clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "govloop needs Python 3.11 or newer on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install  ## the whole loop against a simulated service, live (under 2 minutes)
	$(BIN)/govloop demo

up: install  ## run the loop until Ctrl-C
	$(BIN)/govloop up

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

test: install lint  ## lint, type-check, then every test against a real broker, Redis and SQL
	$(BIN)/python -m pytest

unit: install  ## only the tests that need no services
	$(BIN)/python -m pytest -m "not integration"

bench-sdk: install
	$(BIN)/python benchmarks/sdk/bench_sdk.py

clean:
	rm -rf $(VENV) .govloop .pytest_cache .mypy_cache .ruff_cache
