#!/usr/bin/env python3
"""Write the Kubernetes schemas the runtime needs: the strict Pod schema and only the definitions it reaches.

The upstream data is kubernetes-validate's (``kubernetes-json-schema/v<version>-local-strict/``:
``pod-v1.json`` and ``_definitions.json``, every kind of every Kubernetes version, 108 MB
installed). The config loader validates fragments wrapped in a Pod, and ``config/crd.py`` converts
the same Pod schema, so each supported version needs only ``pod-v1.json`` and the closure of
its ``$ref``s in ``_definitions.json``: written, sorted and compact, gzipped without a
timestamp (byte-for-byte reproducible), to ``src/sidecar_injector/kubeschemas/v<version>.json.gz``
as ``{"pod": ..., "definitions": ...}``, plus ``SOURCE`` naming the kubernetes-validate
release they come from.

    .venv/bin/python scripts/prune_schemas.py          # rewrite (needs kubernetes-validate: the test extra)
    .venv/bin/python scripts/prune_schemas.py --check  # exit 1 if the checked-in files differ

``tests/unit/test_kubeschemas.py`` checks the files are current and that the pruned schemas
give the same verdicts as the full ones on every test config.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "sidecar_injector" / "kubeschemas"
# The versions --kube-version accepts: native sidecars arrived in 1.29 (older versions stay
# accepted so that `native` can say it skips). Every version kubernetes-validate ships from 1.25.
OLDEST = (1, 25)


def upstream_versions() -> list[str]:
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    found = []
    for entry in base.iterdir():
        name = entry.name
        if name.startswith("v") and name.endswith("-local-strict"):
            version = name[1:].removesuffix("-local-strict")
            if tuple(int(x) for x in version.split(".")[:2]) >= OLDEST:
                found.append(version)
    return sorted(found, key=lambda v: [int(x) for x in v.split(".")])


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def prune(pod: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """``definitions`` (the whole ``_definitions.json``) reduced to what ``pod`` reaches."""
    defs = definitions["$defs"]
    keep: set[str] = set()
    todo: set[str] = set()
    _refs(pod, todo)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        found: set[str] = set()
        _refs(defs[name], found)
        todo |= found - keep
    return {**{k: v for k, v in definitions.items() if k != "$defs"}, "$defs": {k: defs[k] for k in sorted(keep)}}


def full(version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    base = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    return json.loads((base / "pod-v1.json").read_text()), json.loads((base / "_definitions.json").read_text())


def encode(version: str) -> bytes:
    pod, definitions = full(version)
    doc = {"pod": pod, "definitions": prune(pod, definitions)}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(raw)
    return buf.getvalue()


def wanted() -> dict[str, bytes]:
    files = {f"v{v}.json.gz": encode(v) for v in upstream_versions()}
    files["SOURCE"] = (f"kubernetes-validate {metadata.version('kubernetes-validate')}: pod-v1.json and the "
                       "definitions it reaches, per version (scripts/prune_schemas.py)\n").encode()
    return files


def main(argv: list[str]) -> int:
    want = wanted()
    have = {p.name: p.read_bytes() for p in OUT.iterdir() if p.name.endswith(".json.gz") or p.name == "SOURCE"}
    if "--check" in argv:
        if want != have:
            print("src/sidecar_injector/kubeschemas is stale: run scripts/prune_schemas.py", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name in set(have) - set(want):
        (OUT / name).unlink()
    for name, data in want.items():
        (OUT / name).write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
