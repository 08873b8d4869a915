# ModelHub — every entry point lives here.
#
#   make up      bring up the local cluster, build and run the operator, apply the samples
#   make test    lint + unit tests + tests against the real local control plane
#
# Tools (etcd, kube-apiserver, kube-controller-manager, kubectl, helm), Python venvs and
# data sets are installed on demand into $(CACHE_DIR), outside git.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CACHE_DIR  ?= $(HOME)/.cache/modelhub
STATE_DIR  ?= $(ROOT)/e2e/.state
CARGO      ?= cargo
VENV       ?= $(ROOT)/.venv
PY         := $(VENV)/bin/python
PYTHON     ?= python3

# Component fragments add their targets and append to TEST_TARGETS / BENCH_TARGETS.
TEST_TARGETS  :=
BENCH_TARGETS :=
include e2e/cluster/cluster.mk
-include workloads/vectorforge/vectorforge.mk
-include workloads/tinyinfer/tinyinfer.mk

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- python venv
VENV_REQS := $(wildcard e2e/python/requirements*.txt)
$(VENV)/.stamp: $(VENV_REQS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	for r in $(VENV_REQS); do $(VENV)/bin/pip install --quiet --disable-pip-version-check -r $$r; done
	touch $@

.PHONY: venv
venv: $(VENV)/.stamp ## python venv with the test clients (qdrant-client, tritonclient, ...)

# Peers for side-by-side benchmarks (faiss, hnswlib, usearch, ...): a separate venv so
# `make test` never waits for them.
VENV_BENCH ?= $(ROOT)/.venv-bench
PY_BENCH   := $(VENV_BENCH)/bin/python
BENCH_REQS := $(wildcard e2e/python/bench-requirements*.txt)
$(VENV_BENCH)/.stamp: $(BENCH_REQS) $(VENV_REQS)
	$(PYTHON) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	for r in $(VENV_REQS) $(BENCH_REQS); do $(VENV_BENCH)/bin/pip install --quiet --disable-pip-version-check -r $$r; done
	touch $@

.PHONY: venv-bench
venv-bench: $(VENV_BENCH)/.stamp ## python venv with benchmark peers
