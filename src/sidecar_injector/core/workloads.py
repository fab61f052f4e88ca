"""Pods inside workloads: where each kind keeps its pod template, for offline injection.

``sidecar-injector inject`` and ``explain`` work on the manifests users keep in Git, where
pods mostly live inside Deployments, Jobs and the like. Each template is injected as the
pod the controller will make from it (the namespace comes from the object, else the
command line, else ``default``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar_injector.core.build import InjectionResult, as_dict
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InjectionError, InputError
from sidecar_injector.core.inject import inject

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
                PodInjection(p.kind, p.name, p.namespace, ("items", i, *p.path), p.before, p.result) for p in sub
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
        result = inject(pod, ns, configs)
    except InputError as e:
        raise InputError(f"{source}: {kind} {name}: {e}") from None
    except InjectionError as e:  # name the document and the workload: the run goes on past it
        raise InjectionError(f"{source}: {kind} {name}: {e}") from None
    new_doc = _replace(doc, path, result.pod) if result.patch else doc
    return new_doc, [PodInjection(kind, str(name), str(ns), path, pod, result)]


def _replace(doc: dict[str, Any], path: tuple[str, ...], value: dict[str, Any]) -> dict[str, Any]:
    if not path:
        return value
    return {**doc, path[0]: _replace(doc[path[0]], path[1:], value)}
