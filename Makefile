# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint clean check-deploy

install: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/workbench up

test: install check-deploy
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The Helm chart, k8s/ manifests and Dockerfile: helm lint, strict schema and CRD
# validation, checkov, and checks that broken values are caught (deploy/check.sh).
check-deploy: install
	bash deploy/check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .workbench
