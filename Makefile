# One target per suite; `make test` runs them all on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SHARED_DATA := ../shared/data/ntsb_us_airplane_accidents.csv

.PHONY: help setup sysdeps lint test test-unit bench demo load layers synth clean

help:
	@echo "make demo    the whole system locally, end to end"
	@echo "make test    lint + all tests (installs what it needs)"
	@echo "make bench   benchmarks against xgboost (writes bench/results.json)"

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(STAMP) sysdeps

# Cross-compiler and qemu-user for the arm64 build and its check (Debian).
sysdeps:
	@if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null \
	    || echo "warning: could not install the arm64 cross-compiler or qemu-user; arm64 tests will skip"; \
	  else echo "warning: no apt-get; arm64 tests will skip"; fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(PY) bench/bench.py

clean:
	rm -rf layers/model/build cdk.out bench/work .pytest_cache
