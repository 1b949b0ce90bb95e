# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both create the virtualenv, install the project, fetch Pulsar and start the services.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check k8s-test install up down status proto lint typecheck unit integration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[functions,dev]'
	touch $(STAMP)

install: $(STAMP)

## The platform up and visibly working (demo tenant, events flowing, recommendations).
run: install
	$(BIN)/magnetar demo

## Everything CI checks: lint, types, layers, generated code, the contract, unit, integration and e2e tests.
test: install
	$(BIN)/python scripts/check_generated.py
	$(BIN)/python scripts/check_contract.py
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/magnetar dev up
	$(BIN)/pytest -q

## What needs no stack, in under a minute: lint, types, the layer contracts
## ([tool.importlinter] in pyproject.toml; docs/architecture.md), unit tests.
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q tests/unit

## The Helm chart installed, upgraded, rolled back and uninstalled on a real Kubernetes
## control plane (etcd, kube-apiserver, controller manager, scheduler, kwok; loopback only),
## started for the run and stopped after it whatever the outcome (docs/kubernetes.md, 10).
k8s-test: install
	bash scripts/install_k8s_tools.sh --control-plane
	$(BIN)/python scripts/k8s_control_plane.py up
	$(BIN)/pytest -q -m k8s tests/k8s; status=$$?; \
	  $(BIN)/python scripts/k8s_control_plane.py down; exit $$status

up: install
	$(BIN)/magnetar dev up
down: install
	$(BIN)/magnetar dev down
status: install
	$(BIN)/magnetar dev status

proto: install
	$(BIN)/python scripts/generate_proto.py

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy && $(BIN)/lint-imports
