# SPDX-License-Identifier: Apache-2.0
# Thin wrapper around CMake/CTest: the README's commands.
BUILD ?= build
MAKEFLAGS += --no-print-directory
JOBS ?= $(shell nproc)
FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps configure build test unit format-check format demo bench clean manifests

all: build

deps:
	@scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

format-check: deps
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format: $(words $(FORMAT_FILES)) files clean"

format:
	@clang-format -i $(FORMAT_FILES)

test: build format-check
	@ctest --test-dir $(BUILD) --output-on-failure

unit: build
	@ctest --test-dir $(BUILD) --output-on-failure -L 'unit|bpf'

demo: build
	@scripts/demo

# manifests/loupe.yaml from charts/loupe (packaging_manifests fails when it is out of date).
manifests: deps
	@/usr/bin/python3 tests/packaging/packaging.py manifests --write

# Figures, never pass/fail: the datapath per packet, the agent's event pipeline, policy sets
# compiled and applied, the agent on live pods (throughput and CPU against no agent, tcpdump
# and nDPI; 200 pods: time, memory; a policy file written to its first packet judged; a mapped
# TCP connection against an unmapped one).
bench: build
	@$(BUILD)/bench/bench-datapath
	@echo
	@$(BUILD)/bench/bench-pipeline
	@echo
	@$(BUILD)/bench/bench-policy
	@echo
	@LOUPE_BIN=$(BUILD)/bin bench/agent-throughput
	@echo
	@LOUPE_BIN=$(BUILD)/bin bench/agent-scale
	@echo
	@LOUPE_BIN=$(BUILD)/bin bench/policy-update
	@echo
	@LOUPE_BIN=$(BUILD)/bin bench/rewrite-throughput

clean:
	rm -rf $(BUILD)
