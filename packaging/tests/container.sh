#!/bin/sh
# packaging/Containerfile, built and run by podman (Debian's, rootful): the
# image podman builds from the static binary's directory has the labels,
# user, entrypoint and command of `make image`'s (oci-image.py), holds only
# /nftopo (the static binary, byte for byte), prints the host binary's
# --version, renders the seed manifests (mounted read-only) exactly as the
# host binary does, and with only CAP_NET_ADMIN programs a network namespace
# made here, as the DaemonSet runs it.
# Usage: container.sh CONTEXT TAG LAYOUT   (root; run from the repository's top)
#   CONTEXT: target/packaging/static (holds the static nftopo)
#   LAYOUT:  make image's OCI layout, tagged TAG
#
# Everything podman keeps lives in a private directory under target/ (its
# run state in one under /tmp), removed at the end (storage, run state, libpod's state, temporary files):
# the test leaves no image, container or storage behind. The settings, and
# why (each one was needed on the build machine, a Debian 12 VM, or keeps
# the test independent of the host's configuration):
#   --storage-driver vfs   no overlay mounts: works on any file system
#                          under target/, also on an overlay root.
#   --cgroup-manager cgroupfs, --events-backend none: no systemd needed.
#   --runtime runc         crun 1.8 refuses hybrid cgroups ("crun: cgroups
#                          in hybrid mode not supported, drop all controllers
#                          from cgroupv2"), which that VM has; runc does not.
#   --ulimit nofile, nproc rootful podman asks the runtime for RLIMIT_NOFILE
#                          1048576 and RLIMIT_NPROC 32768, above that VM's
#                          hard limits (20000 files), and root there lacks
#                          CAP_SYS_RESOURCE, so it cannot raise them ("error
#                          setting rlimit type 7: operation not permitted";
#                          --ulimit host fails alike): ask for low ones.
#   --network none, --pull=never: no network, no registry (FROM scratch).
set -eu

CONTEXT=$1
TAG=$2
LAYOUT=$3
BIN=$CONTEXT/nftopo
SEED=integration/manifests/seed
IMAGE=localhost/nftopo:$TAG
NS=nftopo-pkg-podman-$$
W=$(mkdir -p target/packaging && mktemp -d "$PWD/target/packaging/podman.XXXXXX")
# podman refuses a --runroot longer than 50 characters (the sockets it makes
# under it must fit a socket address), and $PWD/target/... passes that in a
# deep checkout (CI's /check/work/main did): the run state gets a short
# private directory of its own under /tmp.
R=$(mktemp -d /tmp/nftopo-podman.XXXXXX)
# Two directories rootful podman makes outside its --root/--runroot/--tmpdir:
# netavark's /run/containers/networks (fixed for root) and runc's state
# directory /run/runc (podman's cleanup process does not pass runc a private
# --root). Both are empty after the test: removed if the test made them.
RUN_DIRS=""
for d in /run/containers /run/runc; do [ -e "$d" ] || RUN_DIRS="$RUN_DIRS $d"; done

fail() { echo "container.sh: FAIL: $*" >&2; exit 1; }
pm() {
	TMPDIR=$W/tmp podman --root "$W/root" --runroot "$R" --tmpdir "$W/libpod" \
		--storage-driver vfs --cgroup-manager cgroupfs --events-backend none \
		--runtime runc "$@"
}
# podman run, as the tests need it.
prun() {
	pm run --rm --pull=never --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
		--cap-drop all --read-only "$@"
}
cleanup() {
	ip netns del "$NS" 2>/dev/null || true
	if [ -d "$W/root" ]; then
		pm rm --all --force >/dev/null 2>&1 || true
		pm rmi --all --force >/dev/null 2>&1 || true
	fi
	rm -rf "$W" "$R"
	for d in $RUN_DIRS; do
		rmdir "$d/networks" 2>/dev/null || true
		rmdir "$d" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM
mkdir -p "$W/tmp"

echo "== podman build ($(podman --version), $(runc --version | head -1))"
host_version=$("$BIN" --version)
echo "host: $host_version"
revision=$(echo "$host_version" | sed -n 's/.*(git \(.*\))$/\1/p')
[ -n "$revision" ] || fail "no revision in: $host_version"
pm build --pull=never --network none -f packaging/Containerfile \
	--build-arg VERSION="$TAG" --build-arg REVISION="$revision" -t "$IMAGE" "$CONTEXT" ||
	fail "podman build (exit $?)"

echo "== podman image inspect: labels, user, entrypoint, command"
pm image inspect "$IMAGE" >"$W/podman.json"
skopeo inspect --config "oci:$LAYOUT:$TAG" >"$W/layout.json"
python3 - "$W/podman.json" "$W/layout.json" "$TAG" "$revision" <<'EOF'
import json, sys
[podman], layout = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["config"]
tag, revision = sys.argv[3], sys.argv[4]
c = podman["Config"]
assert c["User"] == "0", c
assert c["Entrypoint"] == ["/nftopo"] == layout["Entrypoint"], (c, layout)
assert c["Cmd"] == ["run"] == layout["Cmd"], (c, layout)
assert podman["Os"] == "linux" and podman["Architecture"] == "amd64", podman
labels = c["Labels"]
assert labels["org.opencontainers.image.version"] == tag, labels
assert labels["org.opencontainers.image.revision"] == revision, labels
# created: oci-image.py sets the commit's time, the Containerfile none
# (podman records the build's time as the image's Created).
want = {k: v for k, v in layout["Labels"].items() if k != "org.opencontainers.image.created"}
got = {k: v for k, v in labels.items() if k.startswith("org.opencontainers.image.")}
assert got == want, "labels differ from make image's:\n podman: %s\n layout: %s" % (got, want)
print("user 0, entrypoint /nftopo, cmd run; labels = make image's (version %s, revision %s)"
      % (tag, revision))
EOF

echo "== the root filesystem"
mnt=$(pm image mount "$IMAGE")
files=$(cd "$mnt" && find . -mindepth 1 | sort)
echo "rootfs: $files"
[ "$files" = "./nftopo" ] || fail "the root filesystem holds more than /nftopo"
cmp "$mnt/nftopo" "$BIN" || fail "/nftopo differs from $BIN"
pm image unmount "$IMAGE" >/dev/null

echo "== podman run: --version"
version=$(prun --network none "$IMAGE" --version) || fail "podman run --version (exit $?)"
echo "container: $version"
echo "$version" | grep -q "^nftopo $TAG (git " || fail "--version in the container: $version"
[ "$version" = "$host_version" ] || fail "the container's --version differs from the host's"

echo "== podman run: render, the seed manifests mounted read-only"
# The demo's three states of node-2 (integration/src/bin/demo.rs).
for set in "svc-plain.yaml slices-v1beta1.yaml" "svc-hostname.yaml slices-v1beta1.yaml" \
	"svc-zone-fallback.yaml slices-without-node-2.yaml"; do
	host_args="" ctr_args=""
	for f in nodes.yaml $set; do
		host_args="$host_args $SEED/$f" ctr_args="$ctr_args /m/$f"
	done
	# shellcheck disable=SC2086 # the manifest lists split on purpose
	"$BIN" render --node node-2 --manifests $host_args >"$W/host.nft"
	# shellcheck disable=SC2086
	prun --network none -v "$PWD/$SEED:/m:ro" "$IMAGE" render --node node-2 \
		--manifests $ctr_args >"$W/container.nft" || fail "podman run render $set (exit $?)"
	grep -q '10.43.118.32' "$W/container.nft" || fail "render lacks the service's cluster IP"
	cmp "$W/host.nft" "$W/container.nft" || fail "render of $set: container and host differ"
	echo "render of nodes.yaml $set: $(grep -c . "$W/container.nft") lines, same as the host's"
done

echo "== podman run: apply with only CAP_NET_ADMIN in a network namespace"
ip netns add "$NS"
MANIFESTS="/m/nodes.yaml /m/svc-hostname.yaml /m/slices-v1beta1.yaml"
# shellcheck disable=SC2086
prun --network "ns:/run/netns/$NS" --cap-add NET_ADMIN -v "$PWD/$SEED:/m:ro" "$IMAGE" \
	apply --node node-2 --manifests $MANIFESTS || fail "podman run apply (exit $?)"
ip netns exec "$NS" nft list ruleset >"$W/ruleset"
grep -q '^table ip nftopo' "$W/ruleset" || fail "apply left no table ip nftopo in $NS"
grep -q '10.43.118.32' "$W/ruleset" || fail "the ruleset lacks the service's cluster IP"
echo "apply in the container programmed $NS: $(grep -c . "$W/ruleset") lines"
prun --network "ns:/run/netns/$NS" --cap-add NET_ADMIN "$IMAGE" cleanup ||
	fail "podman run cleanup (exit $?)"
if ip netns exec "$NS" nft list ruleset | grep -q nftopo; then fail "cleanup left rules"; fi
# Without NET_ADMIN the kernel refuses.
# shellcheck disable=SC2086
if prun --network "ns:/run/netns/$NS" -v "$PWD/$SEED:/m:ro" "$IMAGE" \
	apply --node node-2 --manifests $MANIFESTS 2>"$W/denied"; then
	fail "apply without CAP_NET_ADMIN succeeded"
fi
echo "without NET_ADMIN: $(tail -1 "$W/denied")"

pm rmi "$IMAGE" >/dev/null
echo "container.sh: ok"
