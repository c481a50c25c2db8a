# nftopo — see README.md. `make demo` and `make test` need root
# (network namespaces, nftables).

CARGO ?= cargo
BENCH_ARGS ?=

# command:Debian package, installed by `make deps` when the command is missing.
TOOLS := nft:nftables ip:iproute2 iptables:iptables sysctl:procps nsenter:util-linux /usr/bin/time:time

.PHONY: all build deps test demo bench clean

all: build

build:
	$(CARGO) build --workspace --bins

# Idempotent: installs only what is missing; `apt-get update` only then.
deps:
	@missing=""; \
	for t in $(TOOLS); do \
	  command -v "$${t%%:*}" >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(MAKE) package-test

demo: deps build
	target/debug/demo

# The benchmark (integration/src/bin/bench/), release build: writes
# BENCHMARKS.md and its plots in docs/bench/ (about 18 minutes;
# BENCH_ARGS=--quick for a short run). The plots' text needs a TTF font.
# The memory section measures the shipped static binary (`static`).
BENCH_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
bench: deps static
	@test -f $(BENCH_FONT) || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y fonts-dejavu-core; }
	$(CARGO) build --release -p nftopo -p nftopo-integration --bins
	$(CARGO) build --release -p nft-writer -p route-sync --examples
	$(CARGO) run --release -p nftopo-integration --bin bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean

# ---- Packaging (packaging/README.md): `make static deb image`, proven by
# `make package-test` (root: chroot, network namespaces, dpkg -i/-r).

PKG := target/packaging
STATIC_TARGET := x86_64-unknown-linux-gnu
# getrandom's default Linux backend finds getrandom(2) with dlsym, which a
# static binary cannot do, and falls back to /dev/urandom (absent in an
# empty chroot): use the syscall directly.
STATIC_RUSTFLAGS := -C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"
STATIC_BIN := $(PKG)/static/nftopo
IMAGE_TAG := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
CARGO_DEB_VERSION := 3.8.0
KUBERNETES_VALIDATE_VERSION := 1.37.0
PKG_TOOLS := file:file strip:binutils git:git python3:python3 openssl:openssl \
  dpkg-deb:dpkg lintian:lintian systemd-analyze:systemd man:man-db \
  skopeo:skopeo umoci:umoci strace:strace nft:nftables ip:iproute2 \
  podman:podman runc:runc

.PHONY: package-deps static deb image package-test

# Idempotent, as `deps`: apt packages, cargo-deb (pinned), and the
# kubernetes-validate venv (pinned) under target/.
package-deps:
	@missing=""; \
	for t in $(PKG_TOOLS); do \
	  command -v "$${t%%:*}" >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	python3 -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi
	@$(CARGO) deb --version 2>/dev/null | grep -qx 'cargo-deb $(CARGO_DEB_VERSION)' || \
	  $(CARGO) install cargo-deb --version $(CARGO_DEB_VERSION) --locked
	@$(PKG)/venv/bin/kubernetes-validate --version 2>/dev/null | grep -q '$(KUBERNETES_VALIDATE_VERSION)' || \
	  { python3 -m venv $(PKG)/venv && \
	    $(PKG)/venv/bin/pip install -q kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION); }

# Statically linked (glibc), stripped.
static:
	RUSTFLAGS='$(STATIC_RUSTFLAGS)' $(CARGO) build --release --target $(STATIC_TARGET) -p nftopo
	mkdir -p $(PKG)/static
	strip -o $(STATIC_BIN) target/$(STATIC_TARGET)/release/nftopo

# The static binary, packed by cargo-deb with man pages and a copyright file
# generated here (see [package.metadata.deb] in crates/nftopo/Cargo.toml).
deb: package-deps static
	rm -rf $(PKG)/man && SOURCE_DATE_EPOCH="$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct 2>/dev/null || date +%s)}" \
	  $(STATIC_BIN) man $(PKG)/man
	python3 packaging/copyright.py --static > $(PKG)/copyright.new && mv $(PKG)/copyright.new $(PKG)/copyright
	rm -f $(PKG)/nftopo_*.deb
	$(CARGO) deb -p nftopo --no-build --output $(PKG)/
	@ls -l $(PKG)/nftopo_*.deb

# OCI image layout in $(PKG)/image, tag = the version; no container engine.
image: static
	python3 packaging/oci-image.py $(STATIC_BIN) $(PKG)/image $(IMAGE_TAG) $(IMAGE_TAG) \
	  "$$($(STATIC_BIN) --version | sed -n 's/.*(git \(.*\))$$/\1/p')" \
	  "$$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"

package-test: package-deps static deb image
	packaging/tests/static.sh $(STATIC_BIN)
	packaging/tests/deb.sh $(PKG)/nftopo_*.deb
	packaging/tests/sandbox.sh $(STATIC_BIN)
	packaging/tests/image.sh $(PKG)/image $(IMAGE_TAG)
	packaging/tests/container.sh $(PKG)/static $(IMAGE_TAG) $(PKG)/image
	packaging/tests/kubernetes.sh $(PKG)/venv $(STATIC_BIN)
	$(CARGO) test --workspace --test rbac

# ---- Fuzzing (fuzz/, its own workspace on nightly; fuzz/README.md) ----
# Each target runs FUZZ_SECONDS on one core; corpora stay in fuzz/corpus,
# crashes land in fuzz/artifacts/TARGET/ and fail the run (the full log
# is fuzz/artifacts/TARGET.log). Crash regressions are unit tests in the
# crates, so `make test` keeps them.
# No sanitizer by default: nftopo forbids unsafe code, and ASan cost two
# thirds of the executions; FUZZ_SANITIZER=address turns it back on (the
# C in the dependencies, jemalloc's, is not linked into the fuzz targets).
FUZZ_SECONDS ?= 120
FUZZ_TARGETS ?= manifest planner netlink readback trace
FUZZ_SANITIZER ?= none

.PHONY: fuzz reliability

fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cd fuzz && $(CARGO) +nightly fuzz build -O -s $(FUZZ_SANITIZER)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus/$$t fuzz/artifacts; \
	  seeds=""; \
	  [ $$t = manifest ] && seeds="../integration/manifests/seed ../integration/manifests/edge"; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  (cd fuzz && $(CARGO) +nightly fuzz run -O -s $(FUZZ_SANITIZER) $$t corpus/$$t $$seeds -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=2048 \
	    -print_final_stats=1) > fuzz/artifacts/$$t.log 2>&1; \
	  rc=$$?; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' fuzz/artifacts/$$t.log; \
	  [ $$rc -eq 0 ] || { tail -40 fuzz/artifacts/$$t.log; exit $$rc; }; \
	done

# Everything that proves nftopo survives bad input and failures, the long
# way: fuzzing, then the reliability and soak tests at full size with the
# release binary (100 kills of `nftopo run`; 10k services with 1,000
# EndpointSlice changes a second for 60 s).
reliability: fuzz deps
	$(CARGO) build --release -p nftopo
	$(CARGO) build --workspace --bins
	NFTOPO_BIN=$(CURDIR)/target/release/nftopo NFTOPO_KILLS=100 NFTOPO_RUN_KILLS=100 \
	  $(CARGO) test -p nftopo-integration --test reliability -- --nocapture
	NFTOPO_BIN=$(CURDIR)/target/release/nftopo NFTOPO_SOAK_SERVICES=10000 \
	  NFTOPO_SOAK_RATE=1000 NFTOPO_SOAK_SECONDS=60 \
	  $(CARGO) test -p nftopo-integration --test soak -- --nocapture
