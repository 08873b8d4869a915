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
