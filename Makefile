# Two commands matter: `make run` (the service with embedded defaults) and `make test` (everything CI runs).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint pytest bench clean

# (Re)install when pyproject.toml changes; a fresh clone gets a complete virtualenv.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

# The API and one worker on this machine: SQLite and an embedded queue under ./var, no server needed.
# PORT (default 8000) and EFFDET_* override; Ctrl-C stops both.
run: $(STAMP)
	$(BIN)/effdet-service run

lint: $(STAMP)
	$(BIN)/ruff check effdet core app worker effdet_client tests bench
	$(BIN)/ruff format --check effdet core app worker effdet_client tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest

test: lint pytest

# Every benchmark (long: about two hours here, one of them the two 30-minute transfer runs), results in
# var/bench/{results.jsonl,report.md}; QUICK=1 runs each with its smoke-run defaults in a few minutes.
# One alone: $(BIN)/python -m bench.<name> --help.
bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
