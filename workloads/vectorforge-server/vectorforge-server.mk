# vectorforge-server: the Qdrant-compatible REST server (binary `vectorforge`) over the
# vectorforge engine; Rust tests (with its Raft crate, vectorforge-raft), then
# qdrant-client 1.19.1 (REST) against the real binary.
# Included by the top-level Makefile (ROOT, CARGO, VENV, PY).

VFS_DIR    := $(ROOT)/workloads/vectorforge-server
VF_TARGET  ?= $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
VFS_BIN    := $(VF_TARGET)/debug/vectorforge

.PHONY: vectorforge-server-build test-vectorforge-server

vectorforge-server-build: ## debug build of the vectorforge server binary (what the Python tests start)
	CARGO_TARGET_DIR=$(VF_TARGET) $(CARGO) build -p vectorforge-server

# tests/backup.rs runs the S3-compatible server `make tools` builds (versitygw).
test-vectorforge-server: venv vectorforge-server-build tools ## vectorforge-server: Rust tests (backups against a real S3 server) + qdrant-client (REST) against the real binary
	VERSITYGW_BIN=$(TOOLS_BIN)/versitygw CARGO_TARGET_DIR=$(VF_TARGET) $(CARGO) test -p vectorforge-raft -p vectorforge-server
	VECTORFORGE_BIN=$(VFS_BIN) $(PY) -m pytest -q $(VFS_DIR)/tests/python

TEST_TARGETS += test-vectorforge-server
