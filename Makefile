# vnetio — every task goes through this file.  `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.deps-stamp
EXT_STAMP := $(VENV)/.ext-stamp
# Debian packages the test suite and benchmarks need (installed only when missing).
# tshark (with capinfos/editcap from wireshark-common) checks the capture files vnetio writes.
DEB_PACKAGES := iproute2 iputils-ping python3-venv ethtool iperf3 tshark
# util-linux has setpriv: tests drop capabilities (CAP_NET_ADMIN, CAP_BPF) in a child with it.
DEB_PACKAGES += util-linux
# The serial devices: socat is the relay baseline in the benchmarks; net-tools has slattach,
# copied into the guest that tests SlipLink against Linux's own SLIP driver.
DEB_PACKAGES += socat net-tools
# WireGuard peers no one here wrote: wireguard-go (userspace) and wg (wireguard-tools),
# also copied into the guest that runs kernel WireGuard.
DEB_PACKAGES += wireguard-go wireguard-tools
# The guest rig (tests/vm/rig.py): QEMU, Debian's kernel with its modules, static busybox.
# Installed without recommends (QEMU's are the GUI, OVMF, qemu-utils, block drivers: unused).
DEB_PACKAGES_NO_RECOMMENDS := qemu-system-x86 linux-image-amd64 busybox-static
APT_GET ?= apt-get

RUST_SRC := $(shell find src -name '*.rs') Cargo.toml pyproject.toml

.PHONY: help
help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS=":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: system-deps
system-deps: ## install the Debian packages the tests need (root; skipped when present)
	@# Status "installed" only: `dpkg -s` also succeeds for a removed package whose
	@# configuration files remain, which would then never be reinstalled.
	@installed() { [ "$$(dpkg-query -W -f='$${db:Status-Status}' "$$1" 2>/dev/null)" = installed ]; }; \
	missing=""; for p in $(DEB_PACKAGES); do installed $$p || missing="$$missing $$p"; done; \
	missing_nr=""; for p in $(DEB_PACKAGES_NO_RECOMMENDS); do installed $$p || missing_nr="$$missing_nr $$p"; done; \
	if [ -n "$$missing$$missing_nr" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing:$$missing$$missing_nr"; \
	    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
	    export DEBIAN_FRONTEND=noninteractive; $(APT_GET) update -qq || exit 1; \
	    if [ -n "$$missing" ]; then $(APT_GET) install -y -qq $$missing >/dev/null || exit 1; fi; \
	    if [ -n "$$missing_nr" ]; then \
	      $(APT_GET) install -y -qq --no-install-recommends $$missing_nr >/dev/null || exit 1; fi; \
	  else echo "warning: missing Debian packages:$$missing$$missing_nr (run 'sudo make system-deps')"; fi; \
	fi

$(STAMP): requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt
	@touch $@

.PHONY: install
install: $(STAMP) ## create .venv and install the development dependencies

$(EXT_STAMP): $(STAMP) $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release -q
	@touch $@

.PHONY: build
build: $(EXT_STAMP) ## build the extension in release mode into .venv

.PHONY: build-dev
build-dev: $(STAMP) ## build the extension in debug mode (faster compile)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop -q
	@rm -f $(EXT_STAMP)

.PHONY: lint-rust
lint-rust: ## rustfmt check, clippy (warnings are errors), pyo3-only-in-bindings rule
	cargo fmt --check
	cargo clippy -q --all-targets --all-features -- -D warnings
	@! grep -rn 'pyo3' src --include='*.rs' | grep -v '^src/bindings/' | grep -v '^src/lib.rs' \
	  || (echo "pyo3 used outside src/bindings/"; exit 1)

.PHONY: lint-python
lint-python: $(STAMP) ## ruff lint + format check, library-never-imports-the-CLI rule
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	@# vnetio._doctor is no library module: it only keeps `python -m vnetio._doctor` working.
	@! grep -rnE '^\s*(from|import)\s+(vnetio\.cli|\.cli)\b|^\s*from\s+(vnetio|\.)\s+import\s+cli\b|import_module\(.vnetio\.cli' \
	  python/vnetio --include='*.py' | grep -v '^python/vnetio/cli/' | grep -v '^python/vnetio/_doctor\.py:' \
	  || (echo "a library module imports vnetio.cli (only the command line may)"; exit 1)

.PHONY: typecheck
typecheck: $(STAMP) ## strict mypy over the Python package (settings in pyproject.toml)
	$(VENV)/bin/mypy python/vnetio

.PHONY: stubtest
stubtest: build ## check _core.pyi against the built extension
	$(PY) -m mypy.stubtest vnetio._core --allowlist .mypy-stubtest-allowlist

.PHONY: test-rust
test-rust: ## Rust unit tests (pure core, no Python)
	cargo test -q --lib --tests

FUZZ_SECONDS ?= 20
.PHONY: fuzz
fuzz: ## run every cargo-fuzz target for FUZZ_SECONDS each (seeds: fuzz/corpus, read-only)
	@command -v cargo-fuzz >/dev/null || cargo install -q cargo-fuzz --locked
	@# Stable toolchain: RUSTC_BOOTSTRAP lets it take the -Z sanitizer flags cargo-fuzz passes.
	cd fuzz && set -o pipefail && for t in $$(cargo fuzz list); do \
	  mkdir -p corpus-run/$$t && echo "fuzz target $$t ($(FUZZ_SECONDS) s):" && \
	  RUSTC_BOOTSTRAP=1 cargo fuzz run $$t corpus-run/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 2>&1 \
	    | grep -E 'stat::number_of_executed_units|Done|ERROR|panicked' || exit 1; \
	done

.PHONY: format
format: $(STAMP) ## format Rust and Python
	cargo fmt
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

.PHONY: test
test: system-deps build test-rust lint-rust lint-python typecheck stubtest dist-check ## everything CI runs (privileged tests included)
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory fuzz

# --- release: `make dist` builds, `make dist-check` (part of `make test`) proves --------------
DIST_DEPS := $(VENV)/.dist-deps-stamp
DIST_STAMP := dist/.built
PY_SRC := $(shell find python -name '*.py' -o -name '*.pyi' -o -name py.typed)

$(DIST_DEPS): $(STAMP) requirements-dist.txt
	$(PIP) install -r requirements-dist.txt
	@touch $@

# The wheel links with zig against glibc 2.17 stubs (no manylinux container needed): one
# abi3 wheel for CPython >= 3.11 on manylinux2014 x86_64, in its own target/x86_64-*/ dir.
# System calls newer than glibc 2.17 (pidfd_open/pidfd_getfd, bpf) go through syscall(2)
# in src/sys/, so every libc import is <= 2.17; a newer glibc wrapper would still link (as an
# unversioned symbol) and is caught by dist-check (tests/packaging/unversioned_symbols.py).
$(DIST_STAMP): $(DIST_DEPS) $(RUST_SRC) Cargo.lock $(PY_SRC) README.md
	rm -rf dist
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin build \
	  --release --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu \
	  --interpreter $(abspath $(PY)) --out dist
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin sdist --out dist
	@touch $@

.PHONY: dist
dist: $(DIST_STAMP) ## build the abi3 manylinux2014 x86_64 wheel and the sdist into dist/
	@ls -l dist/vnetio-*

.PHONY: dist-check
dist-check: system-deps dist ## auditwheel; the suite against the wheel without Rust on PATH; sdist → wheel
	tests/packaging/check.sh $(abspath $(PY)) $(abspath $(VENV))/bin/auditwheel

.PHONY: demo
demo: system-deps build ## the main job: traffic through two TAPs on a bridge (loopback without root)
	$(VENV)/bin/vnetio demo

# Where the benchmarks write their reports (NAME.md) and raw per-run figures (NAME.json).
# bench-results/ is ignored by git; `make bench BENCH_OUT=docs/bench-data` keeps the raw
# figures of the published tables in the repository (see docs/bench-data/README.md).
BENCH_OUT ?= bench-results
.PHONY: bench
bench: system-deps build ## bridge-loop (paired), checksum vs scapy (paired), capture, filter, serial, vhost-user and WireGuard iperf3 benchmarks, Ctrl-C/close()/responder-stop latency, micro-benchmarks (BENCH_OUT=dir)
	$(PY) benches/bridge_loop.py --out $(BENCH_OUT)/bridge_loop.md --json $(BENCH_OUT)/bridge_loop.json
	$(PY) benches/checksum_scapy.py --out $(BENCH_OUT)/checksum_scapy.md --json $(BENCH_OUT)/checksum_scapy.json
	$(PY) benches/capture_loop.py --out $(BENCH_OUT)/capture_loop.md --json $(BENCH_OUT)/capture_loop.json
	$(PY) benches/filter_loop.py --out $(BENCH_OUT)/filter_loop.md --json $(BENCH_OUT)/filter_loop.json
	$(PY) benches/serial_loop.py --out $(BENCH_OUT)/serial_loop.md --json $(BENCH_OUT)/serial_loop.json
	$(PY) benches/vhost_iperf.py --repeat 5 --out $(BENCH_OUT)/vhost_iperf.md --json $(BENCH_OUT)/vhost_iperf.json
	$(PY) benches/wireguard.py --repeat 3 --out $(BENCH_OUT)/wireguard.md --json $(BENCH_OUT)/wireguard.json
	$(PY) benches/latency.py --trials 200 --out $(BENCH_OUT)/latency.md --json $(BENCH_OUT)/latency.json
	$(PY) -m pytest tests/benchmarks -q -p no:cacheprovider --benchmark-enable --benchmark-columns=median,ops,rounds --benchmark-json=$(BENCH_OUT)/pytest_benchmarks.json
	@echo "also: make bench-offload (iperf3 forwarder, super-frame loop), make bench-rust (criterion)"

SOAK_FRAMES ?= 100000000
.PHONY: soak
soak: system-deps build ## SOAK_FRAMES (10^8) frames each through the bridge loop and a loopback pair, filter + capture on: RSS, descriptors, every frame accounted (RELIABILITY.md)
	$(PY) benches/soak.py --frames $(SOAK_FRAMES) --out bench-results/soak.md --json bench-results/soak.json

.PHONY: bench-offload
bench-offload: system-deps build ## iperf3 through TUN/TAP forwarders (paired), and the 64 KiB super-frame bridge loop (BENCH_OUT=dir)
	$(PY) benches/forwarder.py --out $(BENCH_OUT)/forwarder.md --json $(BENCH_OUT)/forwarder.json
	$(PY) benches/superframe_loop.py --out $(BENCH_OUT)/superframe_loop.md --json $(BENCH_OUT)/superframe_loop.json

.PHONY: bench-rust
bench-rust: ## every criterion benchmark of the Rust core: batches, checksum, vhost-user rings
	cargo bench --bench batch
	cargo bench --bench checksum
	cargo bench --bench vhost_ring

.PHONY: clean
clean: ## remove build products and the virtualenv
	cargo clean
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results .cache/vm dist
