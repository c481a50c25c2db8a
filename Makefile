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

demo: deps build
	target/debug/demo

# The full-sync benchmark (integration/src/bin/bench.rs), release build.
bench: deps
	$(CARGO) build --release -p nftopo -p nftopo-integration --bins
	$(CARGO) build --release -p nft-writer --examples
	$(CARGO) run --release -p nftopo-integration --bin bench -- $(BENCH_ARGS)

clean:
	$(CARGO) clean
