# Two commands on a fresh machine: `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test soak bench lint clean check-deploy chromium

install: $(STAMP)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/workbench up

test: install check-deploy chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=25

# The console's browser tests (tests/console) drive Debian's Chromium: Playwright cannot
# download a browser here. Installed when missing (as root, as CI runs; else with sudo),
# waiting for another apt run to let go of the package lock.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@command -v $(CHROMIUM) > /dev/null || { \
		echo "installing chromium (apt-get)"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq > /dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 \
			install -y -qq chromium > /dev/null; }

# Long fault-injection loops (tests marked soak; `make test` leaves them out) and
# schemathesis with SOAK_EXAMPLES generated requests per operation and role.
SOAK_EXAMPLES ?= 1000
soak: install
	$(BIN)/python -m pytest -q -m soak
	SCHEMATHESIS_MAX_EXAMPLES=$(SOAK_EXAMPLES) $(BIN)/python -m pytest -q tests/api/test_schemathesis.py

# Throughput, latency, ledger size and memory, side by side with PgQueuer; results in
# bench/results/ (JSON and summary.md). Takes a few minutes; nothing else should run.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

# The Helm chart, k8s/ manifests and Dockerfile: helm lint, strict schema and CRD
# validation, checkov, and checks that broken values are caught (deploy/check.sh).
check-deploy: install
	bash deploy/check.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .workbench
