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

run: $(STAMP)
	@echo "effdet-service: the HTTP service is not built yet (see the service issue)."
	@echo "The model library works today: $(BIN)/effdet --help"

lint: $(STAMP)
	$(BIN)/ruff check effdet app worker tests bench
	$(BIN)/ruff format --check effdet app worker tests bench
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint pytest

bench: $(STAMP)
	$(BIN)/python bench/data_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
