# One target per suite; `make test` runs them all on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The real NTSB data shipped in the repository (data/README.md); DATA=... trains on another file.
DATA ?= data/ntsb_us_airplane_accidents.csv.xz
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

ARCH ?= arm64
VERSION ?= 1.0.0
MODEL_DIR := layers/model/train
BUILD_ROOT := layers/model/build
BUNDLE = $(BUILD_ROOT)/$(ARCH)/avsev-severity-$(VERSION)

.PHONY: help setup sysdeps lint test bench bench-monitoring bench-shadow bench-stats bench-cost bench-staleness demo load layers model synth deploy clean lock deps-latest

help:
	@echo "make demo    the whole system locally, end to end"
	@echo "make test    lint + all tests (installs what it needs)"
	@echo "make bench   benchmarks against xgboost (writes bench/results.json)"
	@echo "make bench-monitoring   A/B + drift over 10M records in DuckDB (bench/monitoring_results.json)"
	@echo "make bench-cost   per-request log bytes and handler time for avsev cost (bench/cost_inputs.json)"
	@echo "make bench-staleness   log loss by model age, trained up to year Y, scored Y+1..Y+5 (bench/staleness_results.json)"
	@echo "make bench-stats   false alarms and power of every decision, simulated (bench/stats_results.json)"

# Every environment is built from the lock (uv.lock, with hashes): `uv sync --locked` refuses a
# lock that no longer matches pyproject.toml. uv itself is pinned by hash (tools/requirements-uv.txt)
# and lives in its own venv, so a sync never removes it. No Python is downloaded: python3 is used.
TOOLS ?= .tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3

$(UV): tools/requirements-uv.txt
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q --disable-pip-version-check --require-hashes --no-deps -r $<
	touch $@

$(STAMP): pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --extra dev --extra bench
	touch $@

# Refresh the lock to the newest releases the ranges (and [tool.uv] constraints) allow, and the
# layers' pins with it; then run `make test` (and `make deps-latest` tells what the caps hold back).
lock: | $(UV)
	$(UV) lock --upgrade
	$(UV) run --no-sync --python python3 python tools/layer_pins.py --write

# The suite in a throwaway environment with the newest releases the ranges allow (no lock, no
# caps): writes deps-report.md (what moved, which tests broke, the first error of each).
deps-latest: | $(UV)
	python3 tools/deps_latest.py --uv $(UV) --report deps-report.md $(if $(TESTS),-- $(TESTS))

setup: $(STAMP) sysdeps

# Cross-compiler and qemu-user for the arm64 build and its check; headless Chromium for the
# Swagger page test (Debian).
sysdeps:
	@if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null \
	    || ! command -v chromium >/dev/null; then \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user chromium >/dev/null \
	    || echo "warning: could not install the arm64 cross-compiler, qemu-user or chromium; their tests will skip"; \
	  else echo "warning: no apt-get; arm64 and browser tests will skip"; fi; \
	fi

# mypy: the whole avsev package and the CDK app (pyproject.toml), then each function's
# handler on its own (every one is a module named `app`).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests
	for f in functions/*/app.py; do $(VENV)/bin/mypy --no-error-summary $$f || exit 1; done

# The test files run on $(JOBS) parallel workers (pytest-xdist, a file to a worker: a file's
# fixtures are built once); models and bundles the files share are built once for the run.
JOBS ?= 2
test: setup lint
	$(VENV)/bin/pytest -q -n $(JOBS) --dist loadfile

demo: setup
	$(VENV)/bin/avsev demo --out demo-output

# Bounded load test of the local API (loopback only, ~70 s).
load: setup
	$(PY) bench/load.py --seconds 60

bench: setup
	$(PY) bench/bench.py

# What a deployed shadow adds to the predict handler's p50 (writes bench/shadow_results.json).
bench-shadow: setup
	$(PY) bench/shadow.py

# What a request logs (bytes by kind) and how long its handler runs, per route, through the
# local stack's log router (writes bench/cost_inputs.json, read by `avsev cost`; ~3 min).
bench-cost: setup
	$(PY) bench/cost.py

# False alarms and power of the A/B, drift and trust decisions, simulated on the real data
# (~15 min); the tables go into docs/statistics.md.
bench-stats: setup
	$(PY) bench/stats.py --tables docs/statistics.md

# How log loss grows with model age on the real data (writes bench/staleness_results.json and
# docs/staleness.png; docs/model.md reads them).
bench-staleness: setup
	nice $(PY) bench/staleness.py --plot docs/staleness.png

# Monitoring at 100k, 1M and 10M records: rollups + reports in DuckDB (writes bench/monitoring_results.json).
bench-monitoring: setup
	$(PY) bench/monitoring.py

# Dependency layers for the Lambda platform (pip wheels, no Docker); cached by inputs.
layers: $(STAMP)
	$(PY) infra/build_layers.py --arch $(ARCH)

# Train on the real data and build the bundle the stack ships. Safe to repeat: with the same
# data and VERSION there is nothing to do; new data retrains, and then asks for a new VERSION
# (a built version is never overwritten).
model: setup $(BUNDLE)/card.json

$(MODEL_DIR)/model.json: $(DATA) | $(STAMP)
	$(VENV)/bin/avsev train --data $(DATA) --out $(MODEL_DIR) > /dev/null

$(BUNDLE)/card.json: $(MODEL_DIR)/model.json | $(STAMP)
	@if [ -e $(BUNDLE) ]; then \
	  echo "$(BUNDLE) was built from an older model: versions are immutable, run make model VERSION=<new>" >&2; \
	  exit 2; fi
	$(VENV)/bin/avsev build --model $(MODEL_DIR) --version $(VERSION) --arch $(ARCH) --out $(BUILD_ROOT)/$(ARCH)

STAGE ?= prod

synth: layers
	npx --yes aws-cdk@2 synth --all -c stage=$(STAGE) -c arch=$(ARCH) -c bundle=$(BUNDLE)

# The stage's stack (avsev-staging or avsev-prod) and the account-wide API Gateway logging stack.
# MODEL=production (or a version) deploys that registry version instead of the local build;
# REGISTRY=s3://bucket/prefix (default $$AVSEV_REGISTRY); FORCE="reason" for an unapproved one.
REGISTRY ?= $(AVSEV_REGISTRY)
deploy: layers
	npx --yes aws-cdk@2 deploy --all -c stage=$(STAGE) -c arch=$(ARCH) \
	  $(if $(MODEL),-c model=$(MODEL) -c registry=$(REGISTRY) $(if $(FORCE),-c force="$(FORCE)"),-c bundle=$(BUNDLE))

clean:
	rm -rf layers/model/build cdk.out bench/work .pytest_cache
