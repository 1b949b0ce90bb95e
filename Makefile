# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both create the virtualenv, install the project, fetch Pulsar and start the services.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install up down status proto lint typecheck unit integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[functions,dev]'
	touch $(STAMP)

install: $(STAMP)

## The platform up and visibly working (demo tenant, events flowing, recommendations).
run: install
	$(BIN)/magnetar demo

## Everything CI checks: lint, types, generated code, the contract, unit, integration and e2e tests.
test: install
	$(BIN)/python scripts/check_generated.py
	$(BIN)/python scripts/check_contract.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/magnetar dev up
	$(BIN)/pytest -q

up: install
	$(BIN)/magnetar dev up
down: install
	$(BIN)/magnetar dev down
status: install
	$(BIN)/magnetar dev status

proto: install
	$(BIN)/python scripts/generate_proto.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy
