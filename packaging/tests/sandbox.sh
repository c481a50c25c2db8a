#!/bin/sh
# nftopo.service's sandbox fits what nftopo does: every system call that
# `apply`, `cleanup` and `run` (until SIGTERM, with no API server) make is
# in SystemCallFilter=@system-service, and every socket family they open is
# in RestrictAddressFamilies. No systemd runs here, so the unit itself
# cannot be started: this traces the binary with strace instead, in a
# network namespace made here.
# Usage: sandbox.sh NFTOPO   (root; run from the repository's top)
set -eu

BIN=$(realpath "$1")
UNIT=packaging/debian/nftopo.service
SEED=integration/manifests/seed
NS=nftopo-pkg-sandbox-$$
TMP=$(mktemp -d)

fail() { echo "sandbox.sh: FAIL: $*" >&2; exit 1; }
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$TMP"' EXIT INT TERM

ip netns add "$NS"
ip -n "$NS" link set lo up
trace() { ip netns exec "$NS" strace -f -qq -o "$TMP/trace.$1" "$BIN" "$@"; }
trace apply --node node-2 --manifests "$SEED/nodes.yaml" "$SEED/svc-hostname.yaml" \
	"$SEED/slices-v1beta1.yaml" "$SEED/udp.yaml" >/dev/null
trace cleanup
cat >"$TMP/kubeconfig" <<'EOF'
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: test}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
EOF
timeout -s TERM 4 ip netns exec "$NS" strace -f -qq -o "$TMP/trace.run" "$BIN" run \
	--config packaging/debian/config.yaml --kubeconfig "$TMP/kubeconfig" \
	--hostname-override node-2 >/dev/null 2>&1 || true
grep -q 'sendto(.*NETLINK\|sendmsg(' "$TMP/trace.apply" || fail "apply's trace shows no netlink"

cat "$TMP"/trace.* | sed -E 's/^[0-9]+ +//' | grep -oE '^[a-z_0-9]+\(' | tr -d '(' |
	grep -vx execve | sort -u >"$TMP/used"

# @system-service, its groups expanded.
systemd-analyze syscall-filter >"$TMP/filters" 2>/dev/null
members() { awk -v g="$1" '$0==g{f=1;next} f&&/^$/{exit} f&&!/#/{gsub(/ /,"");print}' "$TMP/filters"; }
todo=@system-service seen=
: >"$TMP/allowed"
while [ -n "$todo" ]; do
	set -- $todo
	g=$1; shift; todo="$*"
	case " $seen " in *" $g "*) continue ;; esac
	seen="$seen $g"
	for x in $(members "$g"); do
		case $x in @*) todo="$todo $x" ;; *) echo "$x" >>"$TMP/allowed" ;; esac
	done
done
sort -u -o "$TMP/allowed" "$TMP/allowed"
grep -qx read "$TMP/allowed" || fail "could not expand @system-service"
grep -q '^SystemCallFilter=@system-service$' "$UNIT" || fail "the unit's filter changed: update this test"
outside=$(comm -23 "$TMP/used" "$TMP/allowed")
echo "system calls: $(wc -l <"$TMP/used") used, all in @system-service${outside:+ except: $outside}"
[ -z "$outside" ] || fail "system calls outside @system-service: $outside"

families=$(cat "$TMP"/trace.* | grep -oE 'socket(pair)?\(AF_[A-Z0-9]+' | sed 's/.*(//' | sort -u)
allowed=$(sed -n 's/^RestrictAddressFamilies=//p' "$UNIT")
for f in $families; do
	case " $allowed " in *" $f "*) ;; *) fail "socket family $f not in RestrictAddressFamilies=$allowed" ;; esac
done
echo "socket families:" $families "(allowed: $allowed)"
echo "sandbox.sh: ok"
