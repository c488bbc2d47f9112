# The project's commands; the same on a fresh Debian 12 machine (as root), a developer's and CI.
#   make setup   install what is missing (Debian packages, .venv, test tools); quick when nothing is
#   make run     the whole system in the foreground, logs streamed; Ctrl-C stops it all
#   make up      the same in the background, returning once every service is ready
#   make down    stop what `make up` (or scripts/infra.sh) started
#   make test    every test, against the real infrastructure (started here where it is not running)
#   make bench   the benchmarks
#   make images  build the five service images (the base too, from Debian packages, where it can't be pulled)
#   make lint    ruff and mypy
#   make clean   stop everything, remove var/
# Extra arguments: make test PYTEST_ARGS="-k storage -x"; make bench BENCH_ARGS="..."

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PY := .venv/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup run up down status test bench images lint clean

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@scripts/setup.sh

run: setup
	@$(PY) scripts/devstack.py run

up: setup
	@$(PY) scripts/devstack.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/devstack.py down; else scripts/infra.sh stop; fi

status:
	@$(PY) scripts/devstack.py status

test: setup
	@scripts/infra.sh start
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	@scripts/infra.sh start
	@if [ -f bench/__main__.py ]; then \
	  $(PY) -m bench $(BENCH_ARGS); \
	elif [ -f bench/run.py ]; then \
	  $(PY) bench/run.py $(BENCH_ARGS); \
	else \
	  echo "make bench: no bench/__main__.py or bench/run.py yet" >&2; exit 1; \
	fi

images:
	@scripts/infra.sh start dockerd
	@scripts/images.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy --strict libs/common/sage_common

clean: down
	rm -rf var/
