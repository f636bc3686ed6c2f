# Coffre — see README.md. `make run` serves a self-contained lab appliance;
# `make test` runs every check (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
HOST ?= 127.0.0.1
PORT ?= 8080
ADMIN_EMAIL ?= admin@coffre.local

.PHONY: install system-deps run test lint typecheck test-core test-provisioning bench clean

system-deps:
	@sh tools/system-deps.sh

$(BIN)/coffre: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/coffre

install: system-deps $(BIN)/coffre

# The enrollment banner comes once the server answers, after uvicorn's start-up lines.
run: install
	$(BIN)/coffre init --data-dir $(DATA)
	COFFRE_CONFIG=$(DATA)/coffre.toml $(BIN)/coffre serve --host $(HOST) --port $(PORT) --invite-admin $(ADMIN_EMAIL)

lint: install
	$(BIN)/ruff check appliance hsm web cli tests bench
	$(BIN)/ruff format --check appliance hsm web cli tests bench

typecheck: install
	$(BIN)/mypy

test-core: install
	$(BIN)/python -m pytest tests --ignore=tests/provisioning -q -ra

test-provisioning: install
	@if [ -d tests/provisioning ]; then \
	  if [ -x provisioning/ci-deps.sh ]; then provisioning/ci-deps.sh; fi; \
	  $(BIN)/python -m pytest tests/provisioning -q -ra; \
	else echo "no provisioning tests"; fi

test: lint typecheck test-core test-provisioning

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
