# The two commands: `make run` (the whole system on SQLite) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup lint generate clean proto-check bench chaos screenshots

$(BIN)/jobtask: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/jobtask

setup: $(BIN)/jobtask

run: setup
	$(BIN)/jobtask up

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite in TEST_WORKERS processes (pytest-xdist; 0: in this one). Most of a test's time is
# spent waiting on the servers and worker processes it starts, so two processes on two cores
# take well under one's time. Each process makes its own PostgreSQL template database
# (tests/conftest.py) and the chaos cells' own server (tests/chaos/conftest.py); worksteal
# evens out the few minute-long tests (tests/scale/test_replicas.py).
TEST_WORKERS ?= 2
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="--durations=80"` or a file to run.
PYTEST_ARGS ?=

test: setup proto-check lint
	scripts/ensure_postgres.sh
	scripts/ensure_chromium.sh
	JOBTASK_TEST_POSTGRES_URL=$${JOBTASK_TEST_POSTGRES_URL:-postgresql+asyncpg://jobtask:jobtask@127.0.0.1:5432/jobtask_test} \
		$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# buf lint and buf breaking against proto/published/ (`scripts/proto_checks.sh publish` updates it).
proto-check:
	scripts/proto_checks.sh

generate: setup
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The benchmark suite (bench/README.md): jobtask beside its ceilings and peers, as a table.
bench: setup
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	scripts/ensure_postgres.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

# The chaos cells at full size (tests/chaos: 2,000 tasks a cell, faults held longer); prints
# the figures and writes them into docs/reliability.md. `make test` runs the short cells.
chaos: setup
	scripts/ensure_postgres.sh
	JOBTASK_CHAOS_FULL=1 JOBTASK_CHAOS_REPORT=docs/reliability.md \
	JOBTASK_TEST_POSTGRES_URL=$${JOBTASK_TEST_POSTGRES_URL:-postgresql+asyncpg://jobtask:jobtask@127.0.0.1:5432/jobtask_test} \
		$(BIN)/pytest -q -p no:cacheprovider tests/chaos -k "not status_machines"

# The dashboard's pages as docs/screenshots/*.png (the README shows one), taken by its browser
# tests; `make test` writes them into each test's temporary folder instead.
screenshots: setup
	scripts/ensure_chromium.sh
	JOBTASK_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/dashboard
