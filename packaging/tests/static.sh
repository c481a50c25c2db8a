#!/bin/sh
# The static binary (make static): no dynamic dependencies, stripped, version
# with the git commit; runs --version, render and apply in an empty chroot
# (only the binary and the manifests), and apply there programs a network
# namespace made here. Then name lookups in that chroot: the in-cluster
# configuration (an IP) needs none; a kubeconfig naming its server by host
# name resolves through /etc/hosts and DNS (glibc >= 2.34 has its `files`
# and `dns` NSS modules inside libc, also in the static libc).
# Usage: static.sh BINARY   (root; run from the repository's top)
set -eu

BIN=$1
SEED=integration/manifests/seed
NS=nftopo-pkg-static-$$
TMP=$(mktemp -d)
DNS_PID=

fail() { echo "static.sh: FAIL: $*" >&2; exit 1; }
cleanup() {
	[ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

echo "== file, ldd"
file "$BIN"
file "$BIN" | grep -Eq 'statically linked|static-pie linked' || fail "not statically linked"
file "$BIN" | grep -q ', stripped' || fail "not stripped"
out=$(ldd "$BIN" 2>&1 || true)
echo "ldd: $out"
echo "$out" | grep -Eq 'not a dynamic executable|statically linked' || fail "ldd lists libraries"

echo "== empty chroot"
ROOT=$TMP/root
mkdir -p "$ROOT/m"
cp "$BIN" "$ROOT/nftopo"
cp "$SEED/nodes.yaml" "$SEED/svc-hostname.yaml" "$SEED/slices-v1beta1.yaml" "$ROOT/m/"
MANIFESTS="/m/nodes.yaml /m/svc-hostname.yaml /m/slices-v1beta1.yaml"
find "$ROOT" | sort

version=$(chroot "$ROOT" /nftopo --version)
echo "$version"
echo "$version" | grep -Eq '^nftopo [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{7,}|unknown)\)$' ||
	fail "--version: $version"

# shellcheck disable=SC2086 # the manifest list splits on purpose
chroot "$ROOT" /nftopo render --node node-2 --manifests $MANIFESTS >"$TMP/render.nft"
grep -q 'table ip nftopo' "$TMP/render.nft" || fail "render printed no table"
grep -q '10.43.118.32' "$TMP/render.nft" || fail "render lacks the service's cluster IP"

ip netns add "$NS"
# shellcheck disable=SC2086
ip netns exec "$NS" chroot "$ROOT" /nftopo apply --node node-2 --manifests $MANIFESTS
ip netns exec "$NS" nft list ruleset >"$TMP/ruleset"
grep -q '^table ip nftopo' "$TMP/ruleset" || fail "apply left no table ip nftopo in $NS"
grep -q '10.43.118.32' "$TMP/ruleset" || fail "the ruleset lacks the service's cluster IP"
echo "apply in the chroot programmed $NS: $(grep -c . "$TMP/ruleset") lines"
ip netns exec "$NS" chroot "$ROOT" /nftopo cleanup
if ip netns exec "$NS" nft list ruleset | grep -q nftopo; then fail "cleanup left rules"; fi

echo "== name lookups from the empty chroot (nftopo run, no API server listening)"
ip -n "$NS" link set lo up
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/ca.key" -out "$TMP/ca.crt" \
	-days 1 -subj /CN=nftopo-test-ca >/dev/null 2>&1
CA=$(base64 -w0 "$TMP/ca.crt")
kubeconfig() { # HOST FILE
	cat >"$2" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://$1:6443", certificate-authority-data: "$CA"}}]
users: [{name: u, user: {token: test}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF
}
# Runs `nftopo run` in the chroot for 3 s with extra arguments; its log.
run_daemon() {
	timeout 3 ip netns exec "$NS" chroot "$ROOT" /nftopo run --hostname-override node-2 \
		--healthz-bind-address= --metrics-bind-address= -v "$@" 2>&1 || true
}
# CASE LOG: the client reached 127.0.0.1:6443 (refused), so any name resolved.
expect_connect() {
	if echo "$2" | grep -q 'dns error'; then
		echo "$2" | grep 'dns error' | head -2
		fail "$1: name lookup failed"
	fi
	echo "$2" | grep -q '127.0.0.1:6443.*Connection refused' || {
		echo "$2" | tail -5
		fail "$1: no connection attempt to 127.0.0.1:6443"
	}
	echo "ok: $1"
}

# In-cluster, as in the DaemonSet: KUBERNETES_SERVICE_HOST is an IP.
SA=$ROOT/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$SA"
cp "$TMP/ca.crt" "$SA/ca.crt"
printf test >"$SA/token"
printf default >"$SA/namespace"
log=$(KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=6443 run_daemon)
expect_connect "in-cluster configuration (no files but the service account)" "$log"
rm -rf "$ROOT/var"

kubeconfig 127.0.0.1 "$ROOT/kc-ip"
expect_connect "kubeconfig with an IP" "$(run_daemon --kubeconfig /kc-ip)"

mkdir -p "$ROOT/etc"
echo "127.0.0.1 apiserver.hosts.test" >"$ROOT/etc/hosts"
kubeconfig apiserver.hosts.test "$ROOT/kc-hosts"
expect_connect "kubeconfig with a host name from /etc/hosts" "$(run_daemon --kubeconfig /kc-hosts)"
rm "$ROOT/etc/hosts"

kubeconfig apiserver.dns.test "$ROOT/kc-dns"
# The check above can fail: without /etc/hosts and a name server, it does.
run_daemon --kubeconfig /kc-dns | grep -q 'dns error' || fail "an unknown name did not fail"
echo "ok: an unknown name fails with a dns error"

echo "nameserver 127.0.0.1" >"$ROOT/etc/resolv.conf"
: >"$TMP/dns.log"
ip netns exec "$NS" python3 packaging/tests/fake-dns.py >"$TMP/dns.log" 2>&1 &
DNS_PID=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q ready "$TMP/dns.log" && break; sleep 0.2; done
expect_connect "kubeconfig with a host name from DNS" "$(run_daemon --kubeconfig /kc-dns)"
grep -q 'apiserver.dns.test' "$TMP/dns.log" || fail "the DNS server was not asked"

echo "static.sh: ok"
