# mcp-warden developer entry points. `make help` lists the targets.
# CARGO_TARGET_DIR is honoured when set in the environment (cargo reads it itself).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

export PEERS_DIR ?= $(CURDIR)/.peers
PEERS_ENV := $(PEERS_DIR)/env.sh
CARGO ?= cargo
# cargo-nextest when installed, plain cargo test otherwise.
TEST_CMD := $(if $(shell command -v cargo-nextest 2>/dev/null),$(CARGO) nextest run --workspace,$(CARGO) test --workspace)

.PHONY: help peers k8s-bins build gen lint test e2e demo bench fuzz image clean clean-peers

help: ## list the targets
	@awk -F':.*## ' '/^[a-z][a-z0-9-]*:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

peers: ## install the third-party test peers into $PEERS_DIR (default .peers/; idempotent)
	@scripts/peers.sh all

k8s-bins: ## build kube-apiserver, kube-controller-manager, kubectl, etcd, helm for the cluster suite (cached outside the clone; a no-op when built)
	@scripts/k8s-bins.sh >/dev/null

build: ## build every crate in the workspace
	$(CARGO) build --workspace

gen: ## regenerate the CRD YAML from the Rust types
	$(CARGO) run -q -p mcp-warden-crds --bin crdgen

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The cluster suite (tests/tests/cluster/) needs k8s-bins, and the mcp-warden-operator binary,
# which the workspace test build makes (the operator crate has integration tests).
test: peers k8s-bins ## lint, then run the workspace tests (with the cluster suite on a real control plane)
	@SECONDS=0; $(MAKE) lint; echo "== lint: $${SECONDS}s"
	@. "$(PEERS_ENV)"; SECONDS=0; echo "+ $(TEST_CMD)"; $(TEST_CMD); echo "== tests: $${SECONDS}s"

e2e: peers ## run the end-to-end tests against the current kube context (they fail, saying what to set up, without one)
	. "$(PEERS_ENV)"; $(CARGO) test -p mcp-warden-e2e -- --ignored --nocapture

demo: peers ## the main job: a standalone sidecar in front of a real MCP server, calls allowed and denied
	@bash scripts/demo.sh

image: ## build both images from the Dockerfile without a Docker engine (buildah, vfs) and run their --help
	@scripts/image.sh

bench: ## run the benchmarks
	@if [[ -f bench/run.sh ]]; then bash bench/run.sh; else echo "the benchmarks come with the benchmark issue"; fi

fuzz: ## run each cargo-fuzz target for FUZZ_SECONDS (default 60)
	@bash scripts/fuzz.sh

clean: ## remove cargo build output
	$(CARGO) clean

clean-peers: ## remove the installed test peers ($PEERS_DIR)
	rm -rf "$(PEERS_DIR)"
