#!/usr/bin/env python3
"""Builds nftopo's OCI image without a container engine: an image layout
(https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
holding one layer with the static binary at /nftopo, FROM scratch.

Usage: oci-image.py BINARY OUTDIR TAG VERSION REVISION CREATED

The layer is reproducible: files sorted, owner 0:0, mtime CREATED, gzip
without a timestamp. The same inputs give the same digests.
The image runs as user 0; capabilities are the runtime's to grant (the
DaemonSet adds NET_ADMIN and drops the rest).
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
from datetime import datetime

MEDIA = {
    "index": "application/vnd.oci.image.index.v1+json",
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
    "layer": "application/vnd.oci.image.layer.v1.tar+gzip",
}


def layer_tar(binary, mtime):
    """The uncompressed layer: /nftopo, mode 0755, root-owned."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("nftopo")
        info.size = os.path.getsize(binary)
        info.mode = 0o755
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with open(binary, "rb") as f:
            tar.addfile(info, f)
    return buf.getvalue()


def blob(outdir, data):
    """Stores `data` under blobs/sha256/; its descriptor's digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(outdir, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    binary, outdir, tag, version, revision, created = sys.argv[1:7]
    mtime = int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    if os.path.exists(outdir):
        shutil.rmtree(outdir)
    os.makedirs(os.path.join(outdir, "blobs", "sha256"))

    tar = layer_tar(binary, mtime)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    layer_digest, layer_size = blob(outdir, gzip.compress(tar, compresslevel=9, mtime=0))

    labels = {
        "org.opencontainers.image.title": "nftopo",
        "org.opencontainers.image.description":
            "kube-proxy replacement: topology-aware service routing with nftables over netlink",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": "https://example.invalid/nftopo",
        "org.opencontainers.image.documentation": "https://example.invalid/nftopo#install",
        "org.opencontainers.image.base.name": "scratch",
    }
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "0",
            "Entrypoint": ["/nftopo"],
            "Cmd": ["run"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{
            "created": created,
            "created_by": "packaging/oci-image.py: /nftopo (static, stripped)",
        }],
    }
    config_digest, config_size = blob(outdir, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA["manifest"],
        "config": {"mediaType": MEDIA["config"], "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA["layer"], "digest": layer_digest, "size": layer_size}],
        "annotations": labels,
    }
    manifest_digest, manifest_size = blob(outdir, canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA["index"],
        "manifests": [{
            "mediaType": MEDIA["manifest"],
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    }
    with open(os.path.join(outdir, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(outdir, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print("%s:%s %s" % (outdir, tag, manifest_digest))


if __name__ == "__main__":
    main()
