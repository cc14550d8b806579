# Jobplane developer commands. `make up` starts the platform locally; `make test` runs everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Never let uv download a Python: use the machine's Python 3.11+.
export UV_PYTHON_DOWNLOADS := never

# `uv` on PATH, else the one `make install` puts in the user site (`pip install --user uv`).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

.PHONY: help install browser infra infra-down infra-status services up down status lint test bench chaos

help:
	@echo "make up            start the whole platform locally: infrastructure, four services, demo app"
	@echo "make down          stop the platform and the infrastructure (data is kept in .local/)"
	@echo "make status        show what runs where"
	@echo "make test          install what is missing, lint, start the infrastructure, run all tests"
	@echo "make infra         start Kafka, the store and the SMTP sink (idempotent)"
	@echo "make infra-down    stop them (data is kept in .local/)"
	@echo "make infra-status  show what runs where"
	@echo "make browser       install Debian's chromium + chromium-driver (the dashboard test's browser)"
	@echo "make lint          ruff check, ruff format --check, mypy (strict)"
	@echo "make chaos         the fault suite and the gateway fuzz alone (ARGS=\"-k kafka\" picks scenarios)"
	@echo "make bench         Jobplane vs Celery + Redis, side by side (ARGS=\"--quick\" to try it)"

install:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || { \
		echo "uv not found: installing it with pip"; \
		python3 -m pip install --user --quiet uv \
		|| python3 -m pip install --user --quiet --break-system-packages uv \
		|| pip install --quiet uv; }
	$(UV) sync

# Debian's chromium and chromium-driver for the dashboard's browser test (apt-get, only when
# missing; needs root or sudo).
browser:
	./deploy/local/install-browser.sh

infra: install
	$(UV) run jobplane-local up

infra-down:
	$(UV) run jobplane-local down

infra-status:
	@$(UV) run jobplane-local status || true

# The gateway, dispatcher, retry and notifier services and the demo app, as local processes.
services:
	$(UV) run jobplane-local platform up

up: infra services

down:
	-$(UV) run jobplane-local platform down
	$(UV) run jobplane-local down

status:
	@$(UV) run jobplane-local status || true
	@$(UV) run jobplane-local platform status || true

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy

# The test fixtures start the local servers; fetching/building them first keeps that out of
# the first test's time budget (the store's first build takes minutes; later runs and other
# clones on this machine reuse it). Servers given by env vars (see README) are not installed.
test: install lint browser
	@if [ -z "$${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then $(UV) run jobplane-local install kafka; fi
	@if [ -z "$${MONGODB_URI:-}" ]; then $(UV) run jobplane-local install store; fi
	$(UV) run pytest

# Jobplane and Celery + Redis doing the same work, side by side (bench/): its own Kafka, store,
# SMTP sink and Redis on the bench ports (redis-server is installed with apt-get if missing).
# Prints figures, never asserts them; JSON and PNG in bench/results/. Options with ARGS, e.g.
# `make bench ARGS="--quick"` or `make bench ARGS="--jobs 500 --runs 5 --profile"`.
bench: install
	$(UV) run --group bench python -m bench $(ARGS)

# The fault suite (services as processes; kill -9, Kafka/store/SMTP outages, a flapping backend)
# and the gateway fuzz, alone: `make test` runs them too. Pick scenarios with ARGS, e.g.
# `make chaos ARGS="-k kafka"`. It starts its own servers on its own ports (see tests/fault/).
chaos: install
	$(UV) run pytest tests/fault $(ARGS)
