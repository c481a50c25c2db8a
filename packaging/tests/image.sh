#!/bin/sh
# The OCI image (make image): skopeo reads and validates the layout (the
# index, manifest, config and layer digests), the config has the entrypoint,
# user and OCI labels, and the root filesystem umoci unpacks runs
# `nftopo --version` in a chroot: it holds nothing but /nftopo.
# Usage: image.sh LAYOUT_DIR TAG   (root)
set -eu

DIR=$1
TAG=$2
TMP=$(mktemp -d)

fail() { echo "image.sh: FAIL: $*" >&2; exit 1; }
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "== skopeo inspect oci:$DIR:$TAG"
skopeo inspect "oci:$DIR:$TAG" | tee "$TMP/inspect.json"
skopeo inspect --config "oci:$DIR:$TAG" >"$TMP/config.json"
# skopeo copy reads every blob and checks its digest.
skopeo copy --quiet "oci:$DIR:$TAG" "dir:$TMP/copy"

python3 - "$TMP/config.json" "$TAG" <<'EOF'
import json, sys
config, tag = json.load(open(sys.argv[1])), sys.argv[2]
c = config["config"]
assert config["os"] == "linux" and config["architecture"] == "amd64", config
assert c["Entrypoint"] == ["/nftopo"], c
assert c["User"] == "0", c
labels = c["Labels"]
for key in ["title", "description", "version", "revision", "created", "licenses", "source"]:
    assert labels.get("org.opencontainers.image." + key), "label " + key
assert labels["org.opencontainers.image.version"] == tag, labels
print("config: entrypoint, user and labels ok")
EOF

echo "== umoci unpack, chroot"
umoci unpack --image "$DIR:$TAG" "$TMP/bundle" >/dev/null
files=$(cd "$TMP/bundle/rootfs" && find . -mindepth 1 | sort)
echo "rootfs: $files"
[ "$files" = "./nftopo" ] || fail "the root filesystem holds more than /nftopo"
version=$(chroot "$TMP/bundle/rootfs" /nftopo --version)
echo "$version"
echo "$version" | grep -q "^nftopo $TAG (git " || fail "--version in the image: $version"

echo "image.sh: ok"
