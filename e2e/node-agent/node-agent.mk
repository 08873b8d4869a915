# Local node agent (e2e/node-agent): registers a Node, binds pending pods and runs their
# containers as local processes, one network namespace per pod. See README.md here.
# Included by the top-level Makefile (which defines ROOT, CARGO, STATE_DIR, TARGET_DIR and
# includes e2e/cluster/cluster.mk for cluster-up, KUBECONFIG and KUBECTL).

NODE_AGENT_DIR   := $(ROOT)/e2e/node-agent
NODE_AGENT_STATE ?= $(STATE_DIR)/node-agent
# Extra flags for `modelhub-node-agent run`, e.g. --namespace-prefix demo- --backoff-seconds 1
NODE_AGENT_ARGS  ?=
export NODE_AGENT_STATE
# The agent the tests run: only their namespaces, quick restarts.
NODE_AGENT_TEST_UP = $(NODE_AGENT_DIR)/up.sh "$(TARGET_DIR)/debug" "$(NODE_AGENT_STATE)" --namespace-prefix mh-na-test- --backoff-seconds 1

.PHONY: build-node-agent node-agent-up node-agent-down node-agent-status logs test-node-agent
build-node-agent:
	$(CARGO) build -p modelhub-node-agent --bins

node-agent-up: cluster-up build-node-agent ## start the local node agent (runs the cluster's pods as processes; needs root)
	$(NODE_AGENT_DIR)/up.sh "$(TARGET_DIR)/debug" "$(NODE_AGENT_STATE)" $(NODE_AGENT_ARGS)

node-agent-down: ## stop the local node agent and every container process it runs
	$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"

node-agent-status: ## show whether the node agent runs and the node it serves
	$(NODE_AGENT_DIR)/status.sh "$(NODE_AGENT_STATE)"

logs: ## show a pod's container logs: make logs POD=namespace/name [CONTAINER=name]
	$(NODE_AGENT_DIR)/logs.sh "$(NODE_AGENT_STATE)" "$(POD)" "$(CONTAINER)"

test-node-agent: cluster-up build-node-agent ## node agent tests against the real local control plane (starts and stops its own agent)
	$(CARGO) test -p modelhub-node-agent --no-run
	$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"
	$(NODE_AGENT_TEST_UP)
	status=0; $(CARGO) test -p modelhub-node-agent --test cluster --test jobs --test image -- --ignored --test-threads=2 || status=$$?; \
	  if [ $$status -eq 0 ]; then \
	    NODE_AGENT_UP='$(NODE_AGENT_TEST_UP)' NODE_AGENT_DOWN='$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"' \
	      $(CARGO) test -p modelhub-node-agent --test restart -- --ignored || status=$$?; \
	  fi; \
	  $(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"; exit $$status

TEST_TARGETS += test-node-agent
