# Two commands set everything up on a machine with only Python 3.11+ and make:
#   make demo   simulate deliveries and run the matching pipeline on the embedded defaults
#   make test   lint, type-check and run every test
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
SYNCED := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export UV_PYTHON := $(abspath $(VENV))/bin/python

# Debian packages the tests need (a real PKCS#11 token for the pkcs11: key store; a real browser
# and its WebDriver for tests/test_ui_pages.py; PostgreSQL and the Redis broker for the
# CeleryExecutor tests, tests/test_celery.py).
SYSTEM_PACKAGES := softhsm2 chromium chromium-driver postgresql redis-server

.PHONY: demo test lint unit bench airflow clean system-packages

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# uv is itself in the locked dev group, so an exact sync keeps it.
$(SYNCED): $(UV) uv.lock pyproject.toml
	$(UV) sync --locked --quiet --compile-bytecode
	@touch $@

demo: $(SYNCED)
	$(VENV)/bin/cme demo

lint: $(SYNCED)
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync mypy

system-packages:
	@bash scripts/system-packages $(SYSTEM_PACKAGES)

# The suite runs on both cores of the small machine it must fit (pytest-xdist); a test module
# stays on one worker, so its module-scoped bring-ups (Airflow, PostgreSQL) start once, and the
# longest modules go first (tests/conftest.py, LONGEST_FIRST).
TEST_WORKERS ?= 2

unit: $(SYNCED) system-packages
	$(UV) run --no-sync pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint unit

bench: $(SYNCED)
	$(UV) sync --locked --quiet --all-groups
	$(UV) run --no-sync python benchmarks/simulate.py

airflow: $(SYNCED)
	$(VENV)/bin/cme airflow

clean:
	rm -rf $(VENV) var var.keys .mypy_cache .ruff_cache .pytest_cache
