"""The offline pipelines over YAML streams: inject, uninject, reinject, and staleness.

Documents are read once (libyaml, kubectl's value rules: :mod:`sidecar_injector.yamlio`);
only pod-bearing documents are converted and injected, and each injected document is edited
in its own text, so everything else of the stream comes out byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InjectionError, InputError
from sidecar_injector.core.inject import inject
from sidecar_injector.core.patch import PatchBuilder
from sidecar_injector.core.uninject import UninjectError, read_status, uninject
from sidecar_injector.core.workloads import (
    POD_PATHS,
    PodInjection,
    check_object,
    inject_object,
    pods_of,
    uninject_object,
)
from sidecar_injector.yamlio.splice import Unsupported, insertions, removals
from sidecar_injector.yamlio.stream import Doc, Rewrite, Source, documents


def has_pods(kind: str) -> bool:
    return kind in POD_PATHS or kind.endswith("List")


@dataclass
class DocResult:
    doc: Doc
    value: Any
    """The document after the pipeline (``None``: not converted, unchanged)."""
    pods: list[PodInjection] = field(default_factory=list)
    changed: bool = False


@dataclass
class Run:
    """Everything one command did to its sources."""

    texts: list[str] = field(default_factory=list)
    docs: list[DocResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _set_in(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, list):
        out = list(doc)
        assert isinstance(head, int)
        out[head] = _set_in(doc[head], rest, value)
        return out
    return {**doc, head: _set_in(doc[head], rest, value)}


def _each_pod_document(
    sources: list[Source],
    convert_all: bool,
    errors: tuple[type[Exception], ...],
    handle: Callable[[Run, Rewrite, Doc, dict[str, Any]], None],
) -> Run:
    """Walk every document; hand the ones that carry pods to ``handle``. Documents without pods
    pass through; a document whose handling raises one of ``errors`` passes through unchanged
    and its error is collected (the run goes on, the command exits 1 at the end)."""
    run = Run()
    for source in sources:
        rw = Rewrite(source)
        for doc in documents(source, convert_all):
            if not has_pods(doc.kind):
                run.docs.append(DocResult(doc, doc.value() if convert_all else None))
                continue
            obj = check_object(doc.value(), doc.label)
            try:
                handle(run, rw, doc, obj)
            except errors as e:
                run.failures.append(str(e))
                run.docs.append(DocResult(doc, obj))
        run.texts.append(rw.text())
        run.notes.extend(rw.notes)
    return run


def inject_sources(sources: list[Source], configs: ConfigSet, namespace: str | None, convert_all: bool) -> Run:
    def handle(run: Run, rw: Rewrite, doc: Doc, obj: dict[str, Any]) -> None:
        new_doc, pods = inject_object(obj, configs, namespace=namespace, source=doc.label)
        changed = [p for p in pods if p.result.patch]
        if changed:
            try:
                edits = [e for p in changed
                         for e in insertions(doc.text, doc.root, p.path, [dict(o) for o in p.result.patch],
                                             p.result.pod)]
            except Unsupported as e:
                rw.edit(doc, None, new_doc, str(e))
            else:
                rw.edit(doc, edits, new_doc)
        run.docs.append(DocResult(doc, new_doc, pods, bool(changed)))

    return _each_pod_document(sources, convert_all, (InjectionError,), handle)


def uninject_sources(sources: list[Source], status_key: str, convert_all: bool) -> Run:
    """Every injected pod (template) back to what it was before injection."""
    def handle(run: Run, rw: Rewrite, doc: Doc, obj: dict[str, Any]) -> None:
        found = uninject_object(obj, status_key, source=doc.label)
        if not found:
            run.docs.append(DocResult(doc, obj))
            return
        new_doc = obj
        for path, u in found:
            new_doc = _set_in(new_doc, path, u.pod)
        try:
            edits = [e for path, u in found for e in removals(doc.text, doc.root, path, u.edits)]
        except Unsupported as e:
            rw.edit(doc, None, new_doc, str(e))
        else:
            rw.edit(doc, edits, new_doc)
        run.docs.append(DocResult(doc, new_doc, changed=True))

    return _each_pod_document(sources, convert_all, (UninjectError,), handle)


@dataclass(frozen=True)
class Staleness:
    """Whether an injected pod's sidecars are what the current configs would inject."""

    state: str
    """``up to date``, ``stale`` or ``unknown`` (cannot tell: old status format)."""
    injected_hash: str = ""
    current_hash: str = ""
    differences: tuple[str, ...] = ()
    message: str = ""


def staleness(pod: dict[str, Any], namespace: str, configs: ConfigSet) -> Staleness | None:
    """``None`` for a pod that was never injected."""
    try:
        status = read_status(pod, configs.status_key)
    except UninjectError as e:
        return Staleness("unknown", message=str(e))
    if status is None:
        return None
    recorded_hash = str(status.get("hash") or "")
    try:
        u = uninject(pod, configs.status_key)
    except UninjectError as e:
        return Staleness("unknown", recorded_hash, message=str(e))
    assert u is not None
    try:
        fresh = inject(u.pod, namespace, configs)
    except (InjectionError, InputError) as e:
        return Staleness("unknown", recorded_hash, message=f"the current configs fail for it: {e}")
    now = read_status(fresh.pod, configs.status_key) or {"injected": [], "hash": "", "digests": {}}
    old_digests: dict[str, Any] = status["digests"] if isinstance(status.get("digests"), dict) else {}
    new_digests: dict[str, Any] = now["digests"] if isinstance(now.get("digests"), dict) else {}
    old_names = [str(n) for n in status.get("injected") or []]
    new_names = [str(n) for n in now.get("injected") or []]
    diffs: list[str] = []
    for n in new_names:
        if n not in old_names:
            diffs.append(f"config {n} added")
    for n in old_names:
        if n not in new_names:
            diffs.append(f"config {n} removed" if n not in configs.by_name
                         else f"config {n} no longer applies")
        elif old_digests.get(n) != new_digests.get(n):
            diffs.append(f"config {n} changed")
    if not diffs and old_names != new_names:
        diffs.append(f"order changed: {', '.join(old_names)} -> {', '.join(new_names)}")
    current = str(now.get("hash") or "(nothing injected)")
    if diffs:
        return Staleness("stale", recorded_hash, current, tuple(diffs))
    return Staleness("up to date", recorded_hash, current)


def kustomize_patches(run: Run) -> list[dict[str, Any]]:
    """For each injected object, the JSON Patch from input to output and its kustomize target."""
    out: list[dict[str, Any]] = []
    for r in run.docs:
        if not r.changed or not r.pods:
            continue
        by_object: dict[tuple[str | int, ...], list[dict[str, Any]]] = {}
        for p in r.pods:
            if not p.result.patch:
                continue
            obj_path: tuple[str | int, ...] = p.path[:2] if p.path and p.path[0] == "items" else ()
            rel = p.path[len(obj_path):]
            prefix = PatchBuilder.pointer(rel) if rel else ""
            ops = by_object.setdefault(obj_path, [])
            for op in p.result.patch:
                ops.append({"op": op["op"], "path": prefix + op["path"], "value": op["value"]})
        original = r.doc.value()
        for obj_path, ops in by_object.items():
            obj = original
            for t in obj_path:
                obj = obj[t]
            api = str(obj.get("apiVersion", ""))
            group, _, version = api.rpartition("/")
            meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
            target: dict[str, Any] = {}
            if group:
                target["group"] = group
            target["version"] = version
            target["kind"] = obj.get("kind")
            if meta.get("name"):
                target["name"] = meta["name"]
            if meta.get("namespace"):
                target["namespace"] = meta["namespace"]
            out.append({"target": target, "patch": ops})
    return out


def patches_yaml(patches: list[dict[str, Any]]) -> str:
    """The ``patches:`` entries of a kustomization.yaml (JSON 6902 patches with a target)."""
    from sidecar_injector.yamlio import emit

    lines = ["# kustomize patches: paste under `patches:` in kustomization.yaml (one per injected object)"]
    for p in patches:
        lines.append("- target:")
        lines.extend(emit.mapping_entries(list(p["target"].items()), 4, emit.Style()))
        lines.append("  patch: |-")
        lines.append("    [")
        ops = [orjson.dumps(op).decode() for op in p["patch"]]
        lines.extend(f"      {op}{',' if i < len(ops) - 1 else ''}" for i, op in enumerate(ops))
        lines.append("    ]")
    return "\n".join(lines) + "\n"


def pods_injected(value: Any, status_key: str) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """The pods (templates) of a document that carry a status annotation."""
    out = []
    for path, pod in pods_of(value):
        meta = pod.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict) and \
                status_key in meta["annotations"]:
            out.append((path, pod))
    return out
