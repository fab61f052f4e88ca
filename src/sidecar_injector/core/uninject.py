"""Removing exactly what the injector added to a pod, from the status annotation alone.

The status annotation (see :func:`sidecar_injector.core.record.status_annotation`) records, by name,
everything an injection added: labels, annotations, containers, init containers and native
sidecars, volumes, pull secrets, mounts/env/ports appended to the pod's own containers,
fields set on a pod-declared sidecar, and which fields were present but empty before. So
removal does not need the configs, which may have changed or gone since.

:func:`uninject` is pure: the injected pod in, the pod as it was before injection out, with
the minimal list of :class:`Edit` (paths in the injected pod) that
:mod:`sidecar_injector.yamlio.splice` applies to the text so the bytes come back too.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import orjson

from sidecar_injector.core.errors import InputError


class UninjectError(InputError):
    """The pod's injection cannot be removed exactly (old or unreadable status)."""


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()


class Edit(NamedTuple):
    """Remove the key or list item at ``path``, or (``value`` not ``REMOVE``) set it back to the
    empty value it had (``[]``, ``{}`` or ``null``)."""

    path: tuple[str | int, ...]
    value: Any = REMOVE


class Uninjection(NamedTuple):
    pod: dict[str, Any]
    edits: list[Edit]
    names: list[str]
    """The configs that were injected (now removed)."""
    status: dict[str, Any]


def read_status(pod: Any, status_key: str) -> dict[str, Any] | None:
    """The parsed status annotation, ``None`` when the pod has none. Raises on garbage."""
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    ann = meta.get("annotations") if isinstance(meta, dict) else None
    raw = ann.get(status_key) if isinstance(ann, dict) else None
    if raw is None:
        return None
    try:
        status = orjson.loads(raw) if isinstance(raw, str) else None
    except orjson.JSONDecodeError:
        status = None
    if not isinstance(status, dict) or not isinstance(status.get("injected"), list):
        raise UninjectError(f"the annotation {status_key} is not readable: cannot tell what was injected")
    return status


def old_format_message(status: dict[str, Any], status_key: str) -> str | None:
    """Why a status written before ``added`` was recorded cannot be undone, or ``None``."""
    if "added" not in status:
        names = ", ".join(str(n) for n in status.get("injected") or [])
        return (f"injected ({names}) by an earlier sidecar-injector whose {status_key} annotation does not record "
                "what it added (old format {\"injected\":[...],\"hash\":...}): it cannot be removed exactly; "
                "run inject on the original manifest instead")
    if status.get("unrecorded"):
        names = ", ".join(str(n) for n in status["unrecorded"])
        return (f"{names} injected by an earlier sidecar-injector that did not record what it added: "
                "it cannot be removed exactly; run inject on the original manifest instead")
    return None


def uninject(pod: dict[str, Any], status_key: str) -> Uninjection | None:
    """The pod without what the injector added, or ``None`` when it was not injected."""
    status = read_status(pod, status_key)
    if status is None:
        return None
    why = old_format_message(status, status_key)
    if why is not None:
        raise UninjectError(why)
    added = status.get("added")
    if not isinstance(added, dict):
        raise UninjectError(f"the annotation {status_key} is not readable: 'added' is not an object")
    empty: dict[str, Any] = added["empty"] if isinstance(added.get("empty"), dict) else {}
    edits: list[Edit] = []
    meta: dict[str, Any] = pod["metadata"] if isinstance(pod.get("metadata"), dict) else {}
    meta_edits: list[Edit] = []
    for key, names in (("labels", added.get("labels") or []), ("annotations", [*(added.get("annotations") or []),
                                                                                status_key])):
        current = meta.get(key)
        if not isinstance(current, dict):
            continue
        gone = [k for k in current if k in set(names)]
        if not gone:
            continue
        if len(gone) == len(current):
            meta_edits.append(Edit(("metadata", key), empty.get(f"metadata.{key}", REMOVE)
                                   if f"metadata.{key}" in empty else REMOVE))
        else:
            meta_edits.extend(Edit(("metadata", key, k)) for k in gone)
    whole_keys = {e.path[1] for e in meta_edits if len(e.path) == 2 and e.value is REMOVE}
    if whole_keys and not (set(meta) - whole_keys):
        # Everything in metadata was ours: it was absent (or empty) before.
        edits.append(Edit(("metadata",), empty["metadata"] if "metadata" in empty else REMOVE))
    else:
        edits.extend(meta_edits)
    spec: dict[str, Any] = pod["spec"] if isinstance(pod.get("spec"), dict) else {}
    for key in ("initContainers", "containers", "volumes", "imagePullSecrets"):
        names = set(added.get(key) or [])
        items = spec.get(key)
        if not names or not isinstance(items, list):
            continue
        edits.extend(_list_edits(("spec", key), items, names, "name", empty.get(f"spec.{key}", REMOVE)
                                 if f"spec.{key}" in empty else REMOVE))
    into: dict[str, Any] = added["into"] if isinstance(added.get("into"), dict) else {}
    if into:
        removed_containers = {n for k in ("initContainers", "containers") for n in added.get(k) or []}
        for key in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(key) or []):
                if not isinstance(c, dict) or c.get("name") in removed_containers:
                    continue
                entry = into.get(str(c.get("name")))
                if isinstance(entry, dict):
                    edits.extend(_container_edits(("spec", key, i), c, entry))
    return Uninjection(apply(pod, edits), edits, [str(n) for n in status["injected"]], status)


_BY = {"env": "name", "volumeMounts": "mountPath", "ports": "containerPort"}


def _container_edits(path: tuple[str | int, ...], c: dict[str, Any], entry: dict[str, Any]) -> list[Edit]:
    edits: list[Edit] = []
    empty: dict[str, Any] = entry["empty"] if isinstance(entry.get("empty"), dict) else {}
    for field in entry.get("fields") or []:
        if field in c:
            edits.append(Edit((*path, field), None if field in empty else REMOVE))
    for key, by in _BY.items():
        names = entry.get(key)
        items = c.get(key)
        if names and isinstance(items, list) and key not in (entry.get("fields") or []):
            edits.extend(_list_edits((*path, key), items, set(names), by, empty.get(key, REMOVE)
                                     if key in empty else REMOVE))
    return edits


def _list_edits(path: tuple[str | int, ...], items: list[Any], names: set[Any], by: str, whole: Any) -> list[Edit]:
    gone = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get(by) in names]
    if not gone:
        return []
    if len(gone) == len(items):
        return [Edit(path, whole)]
    return [Edit((*path, i)) for i in gone]


def apply(doc: dict[str, Any], edits: list[Edit]) -> dict[str, Any]:
    """``doc`` with ``edits`` applied (a copy; list items removed from the last one back)."""
    out = copy.deepcopy(doc)
    for e in sorted(edits, key=lambda e: [(-p if isinstance(p, int) else 0) for p in e.path]):
        parent: Any = out
        for token in e.path[:-1]:
            parent = parent[token]
        last = e.path[-1]
        if e.value is REMOVE:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(e.value)
    return out
