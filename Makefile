# Coffre — see README.md. `make run` serves a self-contained lab appliance;
# `make test` runs every check (lint, types, tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= data
HOST ?= 127.0.0.1
PORT ?= 8080
ADMIN_EMAIL ?= admin@coffre.local

UI_TOOLS := tests/ui/node_modules/axe-core/axe.min.js
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: install system-deps run test lint typecheck test-core test-provisioning bench clean i18n screenshots

# Debian packages (tools/system-deps.sh): python3-venv, SoftHSM2, curl, jq; Chromium (driven by
# Playwright in tests/ui, never downloaded by Playwright itself); Node.js + npm (axe-core, tests).
system-deps:
	@sh tools/system-deps.sh

# Test-only front-end tools, pinned by tests/ui/package-lock.json, into a git-ignored folder.
$(UI_TOOLS): tests/ui/package.json tests/ui/package-lock.json
	npm ci --prefix tests/ui --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

$(BIN)/coffre: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(BIN)/coffre

install: system-deps $(BIN)/coffre $(UI_TOOLS)

# Retake docs/screenshots/*.png (the browser tests take them when asked).
screenshots: install
	COFFRE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/ui -q -p no:cacheprovider

# Refresh the message catalogs after changing a page's text (then translate web/locales/fr).
i18n: install
	$(BIN)/python -m web.locales.sync

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
	$(BIN)/python -m bench.ui
	$(BIN)/python -m bench.rotation
	$(BIN)/python -m bench.folders
	$(BIN)/python -m bench.files

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/ui/node_modules
