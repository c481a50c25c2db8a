#!/usr/bin/env python3
"""Writes the Debian copyright file (machine-readable format 1.0) of the
nftopo binary: nftopo itself, then every crate linked into it (the normal
dependencies of package nftopo for x86_64 Linux, from `cargo metadata`),
each with its licence expression and copyright notices, then one standalone
paragraph per licence with its text.

Licence texts come from the crates' own licence files (Apache-2.0 refers to
/usr/share/common-licenses). A licence with no text found is an error, so
that a new dependency with a new licence is noticed.

Usage: copyright.py [--static] > copyright
  --static  the binary links glibc statically: adds glibc's paragraph.
"""

import json
import os
import re
import subprocess
import sys

TARGET = "x86_64-unknown-linux-gnu"
COMMON = {"Apache-2.0": "/usr/share/common-licenses/Apache-2.0"}
# Files that hold the text of a licence, for crates offering several.
TEXT_FILES = {
    "MIT": ["LICENSE-MIT", "LICENSE-MIT.md", "LICENSE-MIT.txt"],
    "ISC": ["LICENSE-ISC"],
    "Zlib": ["LICENSE-ZLIB", "LICENSE-ZLIB.md"],
    "BSD-2-Clause": ["LICENSE-BSD"],
    "BSL-1.0": ["LICENSE-BOOST", "LICENSE-BSL"],
    "Unicode-3.0": ["LICENSE-UNICODE"],
    "Unlicense": ["UNLICENSE"],
}
# Files a crate with one licence keeps it in.
SOLE_FILES = ["LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"]


def metadata():
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked",
         "--filter-platform", TARGET],
        check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def linked(meta, root_name):
    """The packages `root_name` links: itself and its normal dependencies,
    transitively (no build or dev dependencies)."""
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = next(p["id"] for p in meta["packages"] if p["name"] == root_name)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        for dep in nodes[pid]["deps"]:
            if any(k["kind"] is None for k in dep["dep_kinds"]):
                todo.append(dep["pkg"])
    return [packages[i] for i in seen]


def spdx(expr):
    """A Cargo licence expression in SPDX form (`MIT/Apache-2.0` is the
    old way of writing `MIT OR Apache-2.0`)."""
    return re.sub(r"\s*/\s*", " OR ", expr.strip())


def dep5(expr):
    """SPDX operators as the copyright format writes them."""
    return re.sub(r"\b(OR|AND|WITH)\b", lambda m: m.group(1).lower(), expr)


def ids(expr):
    return set(re.findall(r"[A-Za-z0-9.+-]+", expr)) - {"OR", "AND", "WITH"}


def crate_dir(p):
    return os.path.dirname(p["manifest_path"])


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def notices(p):
    """`Copyright ...` lines of the crate's licence files, else its
    authors."""
    lines = []
    d = crate_dir(p)
    for name in sorted(os.listdir(d)):
        if re.match(r"(LICEN[CS]E|COPYING|COPYRIGHT|UNLICENSE)", name, re.I):
            path = os.path.join(d, name)
            if not os.path.isfile(path):
                continue
            for line in read(path).splitlines():
                line = line.strip()
                if re.match(r"Copyright\s+(\(c\)|©|\d)", line, re.I):
                    if line not in lines:
                        lines.append(line)
    if not lines:
        lines = [a for a in p.get("authors") or []]
    if not lines:
        lines = ["The %s authors" % p["name"]]
    return lines


def text_for(lic, packages):
    """The text of licence `lic` from the first crate (by name) that has a
    file for it, without the crate's own copyright lines."""
    for p in sorted(packages, key=lambda p: (p["name"], p["version"])):
        expr = spdx(p.get("license") or "")
        if lic not in ids(expr):
            continue
        d = crate_dir(p)
        names = TEXT_FILES.get(lic, [])
        if ids(expr) == {lic}:
            names = names + SOLE_FILES
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                body = [l.rstrip() for l in read(path).splitlines()
                        if not re.match(r"\s*Copyright\s+(\(c\)|©|\d)", l, re.I)]
                while body and not body[0].strip():
                    body.pop(0)
                while body and not body[-1].strip():
                    body.pop()
                return body
    return None


def field(name, lines):
    """A multi-line field: continuation lines indented, empty ones `.`."""
    out = ["%s: %s" % (name, lines[0])]
    for line in lines[1:]:
        out.append(" " + line if line.strip() else " .")
    return "\n".join(out)


def main():
    static = "--static" in sys.argv[1:]
    meta = metadata()
    packages = linked(meta, "nftopo")
    ours = {p["id"] for p in packages if p["source"] is None}
    crates = sorted((p for p in packages if p["id"] not in ours),
                    key=lambda p: (p["name"], p["version"]))
    paragraphs = [
        "\n".join([
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
            "Upstream-Name: nftopo",
            field("Comment", [
                "/usr/bin/nftopo is one Rust binary. Besides nftopo's own",
                "crates it links the crates.io crates listed below, one",
                "paragraph each as cargo/NAME-VERSION/*, with the licence",
                "expression the crate declares (`or`: the choice is the",
                "licensee's). Generated from Cargo.lock by",
                "packaging/copyright.py.",
            ]),
        ]),
        "\n".join([
            "Files: *",
            "Copyright: The nftopo authors",
            "License: Apache-2.0",
        ]),
    ]
    used = {"Apache-2.0"}
    if static:
        paragraphs.append("\n".join([
            "Files: glibc/*",
            "Copyright: Free Software Foundation, Inc. and others",
            "License: LGPL-2.1+",
            field("Comment", [
                "The GNU C Library, linked statically into /usr/bin/nftopo.",
            ]),
        ]))
    # C libraries a crate bundles and builds into the binary.
    bundled = []
    for p in crates:
        if p["name"] == "tikv-jemalloc-sys":
            copying = os.path.join(crate_dir(p), "jemalloc", "COPYING")
            if not os.path.exists(copying):
                sys.exit("copyright.py: no %s" % copying)
            text = read(copying)
            notes = [l.strip() for l in text.splitlines()
                     if l.strip().startswith("Copyright (C)")]
            paragraphs.append("\n".join([
                "Files: jemalloc/*",
                field("Copyright", notes),
                "License: BSD-2-Clause-jemalloc",
                field("Comment", [
                    "jemalloc (C), bundled in the tikv-jemalloc-sys crate and",
                    "linked into /usr/bin/nftopo as its memory allocator.",
                ]),
            ]))
            bundled.append(field("License", ["BSD-2-Clause-jemalloc"]
                                 + [l.rstrip() for l in text.splitlines()]))
    for p in crates:
        expr = spdx(p.get("license") or "")
        if not expr:
            sys.exit("copyright.py: crate %s %s declares no licence"
                     % (p["name"], p["version"]))
        used |= ids(expr)
        paragraphs.append("\n".join([
            "Files: cargo/%s-%s/*" % (p["name"], p["version"]),
            field("Copyright", notices(p)),
            "License: %s" % dep5(expr),
        ]))
    missing = []
    for lic in sorted(used):
        if lic in COMMON:
            paragraphs.append(field("License", [
                lic,
                "On Debian systems, the complete text of the license can be",
                "found in %s." % COMMON[lic],
            ]))
            continue
        text = text_for(lic, crates)
        if text is None:
            missing.append(lic)
            continue
        paragraphs.append(field("License", [lic] + text))
    paragraphs.extend(bundled)
    if static:
        paragraphs.append(field("License", [
            "LGPL-2.1+",
            "On Debian systems, the complete text of the GNU Lesser General",
            "Public License version 2.1 can be found in",
            "/usr/share/common-licenses/LGPL-2.1.",
        ]))
    if missing:
        sys.exit("copyright.py: no licence text found for: " + ", ".join(missing))
    sys.stdout.write("\n\n".join(paragraphs) + "\n")


if __name__ == "__main__":
    main()
