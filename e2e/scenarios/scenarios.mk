# End-to-end scenarios of the whole stack (e2e/scenarios): the operator, a node agent and
# the workloads' real binaries on the local cluster. Included by the top-level Makefile
# (after the tinyinfer and node-agent fragments: ORT_LIB, TI_MODELS, NODE_AGENT_*).

.PHONY: test-e2e
test-e2e: cluster-up ort-lib tinyinfer-models build-node-agent ## end-to-end scenarios on the local cluster (TrafficPolicy rollouts, INT8 InferenceServices, sharded VectorCollections, backup and restore through S3)
	$(CARGO) build -p modelhub-operator -p tinyinfer -p gateway -p vectorforge-server --bins
	cp -f $(ORT_LIB) $(TARGET_DIR)/debug/libonnxruntime.so  # tinyinfer finds ONNX Runtime beside its binary
	$(NODE_AGENT_DIR)/down.sh "$(NODE_AGENT_STATE)"
	VERSITYGW_BIN=$(TOOLS_BIN)/versitygw e2e/scenarios/run.sh "$(TARGET_DIR)/debug" "$(NODE_AGENT_STATE)" "$(TI_MODELS)"

TEST_TARGETS += test-e2e
