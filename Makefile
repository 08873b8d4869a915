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
-include workloads/vectorforge-server/vectorforge-server.mk
-include workloads/vectorforge-server/bench.mk
-include workloads/tinyinfer/tinyinfer.mk
-include workloads/gateway/gateway.mk
include e2e/kind/kind.mk
include e2e/node-agent/node-agent.mk
include e2e/scenarios/scenarios.mk

# Namespace `make up` applies the samples to; address of the local operator's metrics.
DEMO_NS          ?= modelhub-demo
OPERATOR_METRICS ?= 127.0.0.1:18090
OPERATOR_STATE   := $(STATE_DIR)/operator
TARGET_DIR        = $(shell $(CARGO) metadata --format-version 1 --no-deps | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# ---------------------------------------------------------------- newcomer entry points
.PHONY: up down
up: cluster-up build-operator build-node-agent install-crds ort-lib minilm-assets ## bring up the local cluster, operator and node agent, apply the samples, show their status
	$(CARGO) build -p tinyinfer -p vectorforge-server -p gateway --bins
	cp -f $(ORT_LIB) $(TARGET_DIR)/debug/libonnxruntime.so  # tinyinfer finds ONNX Runtime beside its binary
	e2e/up-operator.sh "$(TARGET_DIR)/debug/modelhub-operator" "$(OPERATOR_STATE)" "$(OPERATOR_METRICS)"
	# The demo agent serves only the demo namespace, so it never runs (and strands) the
	# pods of test namespaces; NODE_AGENT_ARGS adds flags.
	$(NODE_AGENT_DIR)/up.sh "$(TARGET_DIR)/debug" "$(NODE_AGENT_STATE)" --namespace-prefix $(DEMO_NS) $(NODE_AGENT_ARGS)
	$(KUBECTL) create namespace $(DEMO_NS) --dry-run=client -o yaml | $(KUBECTL) apply -f - >/dev/null
	e2e/seed-models.sh $(DEMO_NS) "$(MINILM_DIR)" "$(NODE_AGENT_STATE)"
	$(KUBECTL) apply -n $(DEMO_NS) -k config/samples
	e2e/show-status.sh $(DEMO_NS)

down: ## stop the operator, the node agent and the local cluster (state is kept; cluster-clean wipes it)
	-e2e/down-operator.sh "$(OPERATOR_STATE)"
	-$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"
	$(MAKE) cluster-down

# ---------------------------------------------------------------- build
.PHONY: build build-operator crds install-crds
build: ## build every binary of the workspace (debug)
	$(CARGO) build --workspace --bins

build-operator:
	$(CARGO) build -p modelhub-operator --bins

crds: ## regenerate crds/, charts/modelhub/crds and config/crd/bases from the Rust types
	$(CARGO) run -q -p modelhub-operator --bin crdgen -- crds charts/modelhub/crds config/crd/bases

install-crds: cluster-up ## install the CRDs into the local cluster
	$(KUBECTL) apply --server-side --force-conflicts -f crds/ >/dev/null
	$(KUBECTL) wait --for condition=established --timeout=60s \
	  crd/vectorcollections.modelhub.io crd/inferenceservices.modelhub.io crd/trafficpolicies.modelhub.io

.PHONY: operator-run
operator-run: build-operator install-crds ## run the operator in the foreground against the local cluster
	POD_NAMESPACE=default $(TARGET_DIR)/debug/modelhub-operator --metrics-addr=$(OPERATOR_METRICS)

# ---------------------------------------------------------------- lint and tests
.PHONY: lint fmt-check clippy crd-drift helm-lint
lint: fmt-check clippy crd-drift helm-lint ## fmt, clippy -D warnings, CRD drift, helm lint

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crd-drift: ## fail when crds/ differs from what the Rust types render
	rm -rf $(STATE_DIR)/crd-drift && mkdir -p $(STATE_DIR)/crd-drift
	$(CARGO) run -q -p modelhub-operator --bin crdgen -- $(STATE_DIR)/crd-drift 2>/dev/null
	diff -ru --exclude=kustomization.yaml $(STATE_DIR)/crd-drift crds || \
	  { echo "crds/ is out of date: run 'make crds'" >&2; exit 1; }

helm-lint: tools
	$(HELM) lint --strict charts/modelhub

.PHONY: test test-unit test-operator-e2e
test: lint test-unit test-operator-e2e $(TEST_TARGETS) ## everything: lint, unit tests, e2e against the local control plane, workload tests
	@echo "make test: all green"

test-unit: ## operator and shared-crate unit tests (no cluster)
	$(CARGO) test -p modelhub-operator -p modelhub-telemetry -p oip -p modelhub-contract

test-operator-e2e: cluster-up ## operator e2e tests against the real local control plane
	-e2e/down-operator.sh "$(OPERATOR_STATE)"  # a `make up` operator or agent would compete with the tests
	-$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"
	KUBECTL=$(KUBECTL) HELM=$(HELM) CARGO=$(CARGO) e2e/operator-e2e.sh

.PHONY: bench bench-operator
bench: bench-operator $(BENCH_TARGETS) ## every benchmark (prints figures)

BENCH_OPERATOR_COUNT ?= 1000
BENCH_OPERATOR_RATE  ?= 0
bench-operator: cluster-up build-operator install-crds ## 1,000 CRs (BENCH_OPERATOR_COUNT; BENCH_OPERATOR_RATE per second, 0 = burst): apply -> StatefulSet latency, settle time, RSS, CPU
	-e2e/down-operator.sh "$(OPERATOR_STATE)"
	$(CARGO) build --release -p modelhub-operator --bins
	KUBECTL=$(KUBECTL) CARGO=$(CARGO) e2e/bench-operator.sh "$(TARGET_DIR)/release/modelhub-operator" $(BENCH_OPERATOR_COUNT) $(BENCH_OPERATOR_RATE)

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
