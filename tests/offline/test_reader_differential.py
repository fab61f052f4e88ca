"""Differential test: we read every manifest as kubectl does (``sigs.k8s.io/yaml``).

Each file is given to the reference reader (``tests/offline/reference.py``, a small Go program
built from the Go module proxy) and to :func:`sidecar_injector.yamlio.stream.documents`, the
reader of ``inject``/``uninject``/``explain``: every document must give the same JSON value,
types included (``true`` is not ``"true"``, ``8`` is not ``"8"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from sidecar_injector.yamlio.read import YAMLInputError, parse, to_python
from sidecar_injector.yamlio.stream import Source, chunks, documents

from .reference import ReferenceUnavailable, ensure, to_json_lines

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted(
    [*(ROOT / "tests" / "offline" / "corpus").glob("*.yaml"), *(ROOT / "tests" / "e2e" / "corpus" / "manifests").glob(
        "*.yaml"), *(ROOT / "examples").glob("*/*.yaml")]
)
GOMOD = Path(os.environ.get("GOMODCACHE", Path.home() / "go" / "pkg" / "mod"))
CACHED_DIRS = [
    GOMOD / "k8s.io" / "kubernetes@v1.37.2" / "cluster" / "addons",
    GOMOD / "k8s.io" / "kubernetes@v1.37.2" / "test" / "e2e" / "testing-manifests",
    GOMOD / "k8s.io" / "api@v0.37.2" / "testdata" / "HEAD",
    GOMOD / "k8s.io" / "apiextensions-apiserver@v0.37.2" / "test" / "integration",
]


@pytest.fixture(scope="module", autouse=True)
def _reference() -> None:
    try:
        ensure()
    except ReferenceUnavailable as e:
        pytest.skip(f"reference reader unavailable: {e}")


def same(a: Any, b: Any, path: str = "$") -> str | None:
    """``None`` when equal as JSON values with their types, else where they differ."""
    if isinstance(a, bool) or isinstance(b, bool):
        ok = type(a) is type(b) and a == b
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        ok = float(a) == float(b)
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            d = same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items, {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    else:
        ok = type(a) is type(b) and a == b
    return None if ok else f"{path}: kubectl {a!r}, ours {b!r}"


def _ours(text: str) -> list[Any]:
    """Every document's value, read as ``inject`` reads it (cut at kubectl's separators, then
    libyaml), without requiring Kubernetes objects (the reference reads any YAML)."""
    out = []
    for start, end in chunks(text):
        for d in parse(text[start:end]):
            if d.root is not None:
                out.append(to_python(d.root))
    return out


def check_file(path: Path) -> bool:
    """Compare one file; ``False`` when kubectl itself cannot read it (then neither may we)."""
    data = path.read_bytes()
    ref = to_json_lines(data)
    if any("error" in r for r in ref):
        return False
    want = [r["json"] for r in ref if r["json"] is not None]
    got = _ours(data.decode())
    assert len(got) == len(want), f"{path}: kubectl reads {len(want)} documents, we read {len(got)}"
    for i, (w, g) in enumerate(zip(want, got, strict=True)):
        diff = same(w, g)
        assert diff is None, f"{path}, document {i + 1}: {diff}"
    return True


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_corpus_reads_as_kubectl_reads_it(path: Path) -> None:
    assert check_file(path), f"{path}: the reference reader cannot read it"


@pytest.mark.slow
def test_kubernetes_sources_in_the_go_module_cache_read_as_kubectl_reads_them() -> None:
    files = [f for d in CACHED_DIRS if d.is_dir() for f in sorted(d.rglob("*.yaml"))]
    if not files:
        pytest.skip("the Kubernetes modules are not in the Go module cache")
    compared = 0
    for f in files:
        try:
            compared += check_file(f)
        except YAMLInputError as e:  # kubectl read it but we could not
            pytest.fail(f"{f}: kubectl reads it, we fail: {e}")
    assert compared > 100, f"only {compared} files compared"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("a: =\n", {"a": "="}),
        ("a: 10:30\n", {"a": "10:30"}),
        ("a: 2024-01-01T10:00:00Z\n", {"a": "2024-01-01T10:00:00Z"}),
        ("a: on\nb: y\nc: 0755\nd: 0o17\n", {"a": True, "b": True, "c": 493, "d": 15}),
    ],
)
def test_values_issue_9_names(text: str, want: Any) -> None:
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n" + "".join("  " + ln + "\n"
                                                                                   for ln in text.splitlines())
    (got,) = [d.value() for d in documents(Source("test", doc), convert_all=True)]
    assert same(want, got["data"]) is None
    (ref,) = [r["json"] for r in to_json_lines(doc.encode())]
    assert same(ref["data"], got["data"]) is None
