"""Pods inside workloads: where each kind keeps its pod template, for offline injection.

``sidecar-injector inject`` and ``explain`` work on the manifests users keep in Git, where
pods mostly live inside Deployments, Jobs and the like. Each template is injected as the
pod the controller will make from it (the namespace comes from the object, else the
command line, else ``default``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sidecar_injector.core.build import InjectionResult, as_dict
from sidecar_injector.core.config import ConfigSet, SidecarConfig
from sidecar_injector.core.errors import InjectionError, InputError
from sidecar_injector.core.inject import NAMESPACE_NOT_ALLOWED, inject
from sidecar_injector.core.templating import is_template
from sidecar_injector.core.uninject import Uninjection, uninject

#: Where each kind keeps the pod (template) to inject.
POD_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True, slots=True)
class PodInjection:
    """One pod or pod template found in a document, and what injection did to it."""

    kind: str
    name: str
    namespace: str
    path: tuple[str | int, ...]
    """Where the pod (template) sits in the document, e.g. ``("spec", "template")``."""
    before: dict[str, Any]
    result: InjectionResult
    notes: tuple[str, ...] = ()
    """Warnings about the object rather than the pod (a namespace assumed)."""

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.path) if self.path else "(the pod itself)"


def check_object(doc: Any, source: str) -> dict[str, Any]:
    """A Kubernetes object is a mapping with string ``apiVersion`` and ``kind``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str) or not isinstance(doc.get("apiVersion"), str):
        raise InputError(f"{source}: not a Kubernetes object (a mapping with apiVersion and kind)")
    return doc


def inject_object(
    doc: dict[str, Any], configs: ConfigSet, *, namespace: str | None, source: str
) -> tuple[dict[str, Any], list[PodInjection]]:
    """Inject every pod (template) in ``doc``; returns the new document and what was done.

    Kinds without pods come back unchanged; ``List`` items are handled one by one.
    """
    kind = doc["kind"]
    if kind == "List" or (kind.endswith("List") and isinstance(doc.get("items"), list)):
        items = doc.get("items") or []
        new_items: list[Any] = []
        found: list[PodInjection] = []
        for i, item in enumerate(items):
            item = check_object(item, f"{source}, items[{i}]")
            new_item, sub = inject_object(item, configs, namespace=namespace, source=f"{source}, items[{i}]")
            new_items.append(new_item)
            found.extend(
                PodInjection(p.kind, p.name, p.namespace, ("items", i, *p.path), p.before, p.result, p.notes)
                for p in sub
            )
        return ({**doc, "items": new_items} if found else doc), found
    path = POD_PATHS.get(kind)
    if path is None:
        return doc, []
    meta = as_dict(doc.get("metadata"))
    name = meta.get("name") or meta.get("generateName") or ""
    ns = meta.get("namespace") or namespace or "default"
    pod: Any = doc
    for key in path:
        pod = pod.get(key) if isinstance(pod, dict) else None
    if not isinstance(pod, dict):
        raise InputError(f"{source}: {kind} {name}: has no pod template at {'.'.join(path)}")
    try:
        result = inject(pod, ns, configs.for_namespace(ns))  # namespaced SidecarConfigs (core.tenancy)
    except InputError as e:
        raise InputError(f"{source}: {kind} {name}: {e}") from None
    except InjectionError as e:  # name the document and the workload: the run goes on past it
        raise InjectionError(f"{source}: {kind} {name}: {e}") from None
    new_doc = _replace(doc, path, result.pod) if result.patch else doc
    notes: tuple[str, ...] = ()
    if not meta.get("namespace") and not namespace and _reads_namespace(result, configs):
        notes = (f"{kind} {name or '(no name)'} names no namespace and --namespace was not given: injected as "
                 "namespace 'default', which a config's template or namespaces rule read",)
    return new_doc, [PodInjection(kind, str(name), str(ns), path, pod, result, notes)]


_NAMESPACE_WORD = re.compile(r"\bnamespace\b")
_READS_NAMESPACE: dict[int, bool] = {}


def _config_reads_namespace(c: SidecarConfig) -> bool:
    """Whether a config's templates mention ``namespace`` (the variable, or the pod's field)."""
    known = _READS_NAMESPACE.get(id(c))
    if known is None:
        texts: list[str] = []

        def strings(v: Any) -> None:
            if isinstance(v, str):
                if is_template(v):
                    texts.append(v)
            elif isinstance(v, dict):
                for x in v.values():
                    strings(x)
            elif isinstance(v, list):
                for x in v:
                    strings(x)

        for frag in (c.labels, c.annotations, c.init_containers, c.containers, c.volumes, c.volume_mounts, c.env,
                     c.image_pull_secrets):
            strings(frag.static)
        known = bool(c.namespaces) or any(_NAMESPACE_WORD.search(t) for t in texts)
        _READS_NAMESPACE[id(c)] = known
    return known


def _reads_namespace(result: InjectionResult, configs: ConfigSet) -> bool:
    if any(d.reason == NAMESPACE_NOT_ALLOWED for d in result.decisions):
        return True
    return any(_config_reads_namespace(configs.by_name[n]) for n in result.injected if n in configs.by_name)


def pods_of(doc: dict[str, Any]) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every pod (template) in a document, with its path; ``List`` items one by one."""
    kind = doc.get("kind")
    if not isinstance(kind, str):
        return []
    if kind == "List" or (kind.endswith("List") and isinstance(doc.get("items"), list)):
        out: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
        for i, item in enumerate(doc.get("items") or []):
            if isinstance(item, dict):
                out.extend((("items", i, *p), pod) for p, pod in pods_of(item))
        return out
    path = POD_PATHS.get(kind)
    if path is None:
        return []
    pod: Any = doc
    for key in path:
        pod = pod.get(key) if isinstance(pod, dict) else None
    return [(path, pod)] if isinstance(pod, dict) else []


def uninject_object(
    doc: dict[str, Any], status_key: str, *, source: str
) -> list[tuple[tuple[str | int, ...], Uninjection]]:
    """What to remove from every injected pod (template) of ``doc``: (its path, the removal).

    Raises :class:`~sidecar_injector.core.uninject.UninjectError` (naming the document) when a
    pod's status cannot be undone exactly.
    """
    out = []
    for path, pod in pods_of(doc):
        try:
            u = uninject(pod, status_key)
        except InputError as e:
            raise type(e)(f"{source}: {doc.get('kind')} {_name(doc, path)}: {e}") from None
        if u is not None:
            out.append((path, u))
    return out


def _name(doc: dict[str, Any], path: tuple[str | int, ...]) -> str:
    obj: Any = doc
    if path and path[0] == "items":
        obj = doc["items"][path[1]]
    meta = as_dict(obj.get("metadata"))
    return str(meta.get("name") or meta.get("generateName") or "(no name)")


def _replace(doc: dict[str, Any], path: tuple[str, ...], value: dict[str, Any]) -> dict[str, Any]:
    if not path:
        return value
    return {**doc, path[0]: _replace(doc[path[0]], path[1:], value)}
