#!/bin/sh
# The Debian package (make deb): metadata and contents, lintian without
# errors, the unit verified by systemd-analyze, dpkg -i gives a working
# /usr/bin/nftopo and a config file that parses, and dpkg -r removes the
# package and the rules nftopo programmed. Every dpkg call runs inside a
# network namespace made here, so that the prerm's `nftopo cleanup` acts on
# that namespace and never on the host's.
# Usage: deb.sh PACKAGE.deb   (root; run from the repository's top)
set -eu

DEB=$1
SEED=integration/manifests/seed
NS=nftopo-pkg-deb-$$
TMP=$(mktemp -d)

fail() { echo "deb.sh: FAIL: $*" >&2; exit 1; }
in_ns() { ip netns exec "$NS" "$@"; }
cleanup() {
	if [ -e "$TMP/installed" ]; then in_ns dpkg --purge nftopo >/dev/null 2>&1 || true; fi
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

if dpkg-query -W -f '${Status}' nftopo 2>/dev/null | grep -q installed; then
	fail "nftopo is installed on this machine; this test installs and removes it: remove it first"
fi
ip netns add "$NS"

echo "== dpkg-deb --info"
dpkg-deb --info "$DEB"
for f in 'Package: nftopo' 'Architecture: amd64' 'Section: net'; do
	dpkg-deb --info "$DEB" | grep -q "^ $f" || fail "control lacks $f"
done
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/nftopo/config.yaml ||
	fail "/etc/nftopo/config.yaml is not a conffile"

echo "== dpkg-deb --contents"
dpkg-deb --contents "$DEB" | tee "$TMP/contents"
for f in ./usr/bin/nftopo ./lib/systemd/system/nftopo.service ./etc/nftopo/config.yaml \
	./usr/share/man/man8/nftopo.8.gz ./usr/share/man/man8/nftopo-run.8.gz \
	./usr/share/doc/nftopo/copyright ./usr/share/doc/nftopo/changelog.Debian.gz; do
	grep -q " $f\$" "$TMP/contents" || fail "the package lacks $f"
done

echo "== lintian"
lintian --fail-on error --show-overrides "$DEB" 2>&1 | tee "$TMP/lintian" || fail "lintian reports errors"
if grep -q '^E:' "$TMP/lintian"; then fail "lintian reports errors"; fi

echo "== dpkg -i"
touch "$TMP/installed"
in_ns dpkg -i "$DEB"
version=$(/usr/bin/nftopo --version)
echo "$version"
echo "$version" | grep -Eq '^nftopo [0-9.]+ \(git ' || fail "/usr/bin/nftopo --version: $version"
man -w nftopo-run >/dev/null || fail "man nftopo-run: no page"
head -12 /usr/share/doc/nftopo/copyright

echo "== systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/nftopo.service
grep -q '^ExecStart=/usr/bin/nftopo run --config /etc/nftopo/config.yaml$' \
	/lib/systemd/system/nftopo.service || fail "unexpected ExecStart"

echo "== the shipped config parses (as shipped, and with every option uncommented)"
# A missing kubeconfig is the first error after the configuration is read.
parse() {
	out=$(in_ns /usr/bin/nftopo run --config "$1" --kubeconfig /nonexistent \
		--healthz-bind-address= --metrics-bind-address= 2>&1 || true)
	echo "$out" | grep -q 'kubeconfig /nonexistent' || { echo "$out"; fail "$1 does not load"; }
}
parse /etc/nftopo/config.yaml
sed 's/^\( *\)#\([a-zA-Z]\)/\1\2/' /etc/nftopo/config.yaml >"$TMP/all.yaml"
parse "$TMP/all.yaml"

echo "== dpkg -r removes the rules nftopo programmed"
in_ns /usr/bin/nftopo apply --node node-2 --manifests \
	"$SEED/nodes.yaml" "$SEED/svc-hostname.yaml" "$SEED/slices-v1beta1.yaml"
in_ns nft list ruleset | grep -q '^table ip nftopo' || fail "apply programmed nothing"
in_ns dpkg -r nftopo
if in_ns nft list ruleset | grep -q nftopo; then fail "rules left after dpkg -r"; fi
[ ! -e /usr/bin/nftopo ] || fail "/usr/bin/nftopo left after dpkg -r"
[ -e /etc/nftopo/config.yaml ] || fail "dpkg -r removed the conffile (only purge should)"
in_ns dpkg --purge nftopo
[ ! -e /etc/nftopo/config.yaml ] || fail "dpkg --purge left the conffile"
rm "$TMP/installed"

echo "deb.sh: ok"
