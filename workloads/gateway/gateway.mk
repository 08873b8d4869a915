# gateway: unit tests, loopback tests against real tinyinfer backends, benchmark.
# Included by the top-level Makefile after tinyinfer.mk (uses its ORT library, test
# models, TI_TARGET and TI_TEST_ENV).

GW_DIR := $(ROOT)/workloads/gateway

.PHONY: gateway-build test-gateway

gateway-build: ## debug build of the gateway and tinyinfer binaries (what the loopback tests start)
	CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) build -p tinyinfer -p gateway

test-gateway: ort-lib tinyinfer-models gateway-build ## gateway: unit tests + loopback tests with real tinyinfer backends
	$(TI_TEST_ENV) CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) test -p gateway

TEST_TARGETS += test-gateway

.PHONY: bench-gateway
# The peer rows (nginx in front of the same tinyinfer) appear when nginx is installed
# (`apt-get install nginx-light`; BENCH_NGINX=/path/to/nginx for another build).
bench-gateway: ort-lib tinyinfer-models ## gateway: p50/p99 added latency and throughput vs tinyinfer direct and vs nginx, REST and gRPC, 64 clients
	CARGO_TARGET_DIR=$(TI_TARGET) $(CARGO) build --release -p tinyinfer -p gateway --bins --examples
	$(TI_TEST_ENV) TINYINFER_BIN=$(TI_BIN_REL) GATEWAY_BIN=$(TI_TARGET)/release/gateway GATEWAY_LOG=warn \
	  $(TI_TARGET)/release/examples/bench

BENCH_TARGETS += bench-gateway
