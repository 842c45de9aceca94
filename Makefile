# driftline — one command each: `make demo`, `make test`, `make check`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
PYTEST_ARGS ?=

TOOLS := .venv-tools
CHECKOV_VERSION := 3.2.533

.PHONY: bench-tools tools actionlint demo test test-fast test-unit test-functional test-e2e check lint fmt typecheck lock bench clean java

java:
	@command -v java >/dev/null 2>&1 || { echo "driftline: 'java' not found: the KCL MultiLangDaemon needs Java 17. Install it: apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "driftline: $(PYTHON) not found (Python >= 3.11 needed); set PYTHON=..." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	@$(UV) pip sync --quiet --python $(PY) --require-hashes --only-binary kclpy-ext --compile-bytecode requirements.lock
	@$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@# bytecode up front: every process (processors, relays, tests' subprocesses) imports
	@# without compiling, also where PYTHONDONTWRITEBYTECODE is set
	@$(PY) -m compileall -q -j 0 etl consumers retrain infra >/dev/null
	@touch $(STAMP)

demo: java $(STAMP)
	$(VENV)/bin/driftline demo $(DEMO_ARGS)

# checkov (IaC security scan) lives in its own venv: its pins conflict with ours.
$(TOOLS)/.installed: .ci/actionlint.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --no-deps --only-binary :all: --require-hashes -r .ci/actionlint.txt
	@touch $@

tools: $(TOOLS)/.installed

# The GitHub workflows (.github/workflows) checked by actionlint.
actionlint: tools
	$(TOOLS)/bin/actionlint -no-color .github/workflows/*.yml

test: java $(STAMP) tools
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The inner loop: unit + functional (emulator), no KCL daemon.
test-fast: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/functional $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-functional: $(STAMP)
	$(PY) -m pytest -q tests/functional $(PYTEST_ARGS)

test-e2e: java $(STAMP)
	$(PY) -m pytest -q tests/e2e $(PYTEST_ARGS)

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck actionlint test

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --all-extras --python-version 3.11 --generate-hashes \
		--no-emit-package driftline -o requirements.lock

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .driftline .pytest_cache .mypy_cache .ruff_cache

# The detection and throughput benches' comparators, each in its own venv (their pins conflict with
# the lock: whylogs needs numpy < 2, Evidently 0.7 does not import with pandas 3).
BENCH_TOOLS := bench/.tools
RIVER_VERSION := 0.26.1
WHYLOGS_VERSION := 1.6.4
EVIDENTLY_VERSION := 0.7.23
$(BENCH_TOOLS)/river/.installed:
	@test -x $(BENCH_TOOLS)/river/bin/python || $(PYTHON) -m venv $(BENCH_TOOLS)/river
	@$(BENCH_TOOLS)/river/bin/pip install --quiet --disable-pip-version-check "river==$(RIVER_VERSION)"
	@touch $@
$(BENCH_TOOLS)/whylogs/.installed:
	@test -x $(BENCH_TOOLS)/whylogs/bin/python || $(PYTHON) -m venv $(BENCH_TOOLS)/whylogs
	@$(BENCH_TOOLS)/whylogs/bin/pip install --quiet --disable-pip-version-check "whylogs==$(WHYLOGS_VERSION)" "numpy<2" "pandas<2.3" "scipy<1.14" "pyarrow<18" ipython pybars3
	@touch $@
$(BENCH_TOOLS)/evidently/.installed:
	@test -x $(BENCH_TOOLS)/evidently/bin/python || $(PYTHON) -m venv $(BENCH_TOOLS)/evidently
	@$(BENCH_TOOLS)/evidently/bin/pip install --quiet --disable-pip-version-check "evidently==$(EVIDENTLY_VERSION)" "pandas<3" pyarrow
	@touch $@
bench-tools: $(BENCH_TOOLS)/river/.installed $(BENCH_TOOLS)/whylogs/.installed $(BENCH_TOOLS)/evidently/.installed
