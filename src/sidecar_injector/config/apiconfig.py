"""SidecarConfig objects of both kinds, from files or from the API, into one ConfigSet.

Both kinds are accepted everywhere:

- ``ClusterSidecarConfig``, or a ``SidecarConfig`` without ``metadata.namespace`` in a file:
  a cluster config, as file configs always were (its ``namespaces``/selectors decide);
- ``SidecarConfig`` with a namespace (every one in the API; in a file, one that names
  ``metadata.namespace``): applies only to pods in that namespace, shadows a cluster config of
  the same name there (:mod:`sidecar_injector.core.tenancy`), and may not set
  ``spec.namespaces`` (refused with that field named).

Validation is exactly the loader's (:func:`sidecar_injector.core.parse.parse_config`, with the
Pod schema, the apiserver rules, typed templates and CEL), plus the rules above. Messages come
in two forms: with the source (``config.yaml, document 2 (envoy): spec...``), as the loader
always wrote them, and *file-free* (``spec.containers[0].image: required``) for the validating
webhook and the objects' status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar_injector.config.crd import KINDS, NAMESPACED_KIND
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet, SidecarConfig
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.parse import PodSchema, parse_config
from sidecar_injector.core.tenancy import scoped_set

__all__ = ["Entry", "build_set", "describe", "parse_documents", "parse_object", "validation_review"]

_MARK = "\x00src"  # a source no document has: stripped from messages to make them file-free
_KINDS_TEXT = " or ".join(repr(k) for k in KINDS)


@dataclass(frozen=True, slots=True)
class Entry:
    """One valid config and where it applies."""

    config: SidecarConfig
    namespace: str | None
    """None: a cluster config; else the only namespace it applies to."""
    key: str
    """``ClusterSidecarConfig/envoy`` or ``SidecarConfig/team-a/envoy``: what status is written on."""
    origin: str = "file"
    """``file`` or ``api``."""


def describe(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _check_head(doc: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """(kind, problems) of apiVersion/kind and the tenancy rule, as (field, message)."""
    if not isinstance(doc, dict):
        return None, []
    problems: list[tuple[str, str]] = []  # apiVersion and a wrong kind: the loader says it
    kind = doc.get("kind") if doc.get("kind") in KINDS else None
    meta = doc.get("metadata")
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    spec = doc.get("spec")
    if kind == NAMESPACED_KIND and isinstance(ns, str) and ns and isinstance(spec, dict) and spec.get("namespaces"):
        problems.append(("spec.namespaces", f"a SidecarConfig applies only to pods in its own namespace "
                         f"({ns}) and may not name namespaces; use a ClusterSidecarConfig (cluster admins)"))
    return kind, problems


def _for_loader(doc: dict[str, Any]) -> dict[str, Any]:
    """The document as the loader reads it: kind SidecarConfig, no status, metadata.name only."""
    out = {k: v for k, v in doc.items() if k != "status"}
    if out.get("kind") in KINDS:
        out["kind"] = "SidecarConfig"
    meta = out.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {"name": meta.get("name")} if "name" in meta else {}
    return out


def parse_object(doc: Any, source: str, *, schema: PodSchema | None, origin: str = "file") -> Entry:
    """Validate one document or API object; raises ConfigError listing every problem (with ``source``)."""
    kind, head = _check_head(doc)
    name = None
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        name = doc["metadata"].get("name")
    prefix = f"{source} ({name})" if isinstance(name, str) and name else source
    lines = [f"{prefix}: {field}: {msg}" for field, msg in head]
    config = None
    try:
        config = parse_config(_for_loader(doc) if isinstance(doc, dict) else doc, source, schema=schema)
    except ConfigError as e:
        lines += [line.replace(": kind: must be 'SidecarConfig',", f": kind: must be {_KINDS_TEXT},", 1)
                  for line in str(e).splitlines()]
    if lines:
        raise ConfigError("\n".join(lines))
    assert config is not None and isinstance(doc, dict)
    ns = doc["metadata"].get("namespace")
    namespace = ns if kind == NAMESPACED_KIND and isinstance(ns, str) and ns else None
    return Entry(config, namespace, f"{kind}/{namespace}/{config.name}" if namespace else f"{kind}/{config.name}",
                 origin)


def file_free(error: ConfigError, name: str | None) -> list[str]:
    """The messages of ``error`` (from :func:`parse_object` with source ``_MARK``) without the source."""
    out = []
    for line in str(error).splitlines():
        for p in (f"{_MARK} ({name}): ", f"{_MARK}: "):
            if line.startswith(p):
                line = line[len(p):]
                break
        out.append(line)
    return out


def check_object(obj: dict[str, Any], *, schema: PodSchema | None) -> tuple[Entry | None, list[str]]:
    """(entry, []) for a valid API object, else (None, file-free problems)."""
    name = obj.get("metadata", {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    try:
        entry = parse_object(obj, _MARK, schema=schema, origin="api")
    except ConfigError as e:
        return None, file_free(e, name if isinstance(name, str) else None)
    kind = NAMESPACED_KIND if entry.namespace else str(obj.get("kind"))
    # Messages (injection errors, duplicates, explain) name the object, not the marker.
    config = dataclasses.replace(entry.config, source=describe(kind, entry.config.name, entry.namespace))
    return dataclasses.replace(entry, config=config), []


def build_set(entries: Iterable[Entry], prefix: str = DEFAULT_PREFIX, native_sidecars: bool = True
              ) -> tuple[ConfigSet, dict[str, str]]:
    """The ConfigSet of valid ``entries``, and the problems of those left out, by key.

    Duplicates (a name defined twice in the same scope: a file config and an API object, say)
    keep the first (files come first) and report the others.
    """
    cluster: dict[str, Entry] = {}
    namespaced: dict[str, dict[str, Entry]] = {}
    problems: dict[str, str] = {}
    for e in entries:
        scope = cluster if e.namespace is None else namespaced.setdefault(e.namespace, {})
        first = scope.get(e.config.name)
        if first is not None:
            problems[e.key] = (f"metadata.name: {e.config.name!r} is already defined by {first.config.source}"
                               + (" (files win)" if first.origin == "file" and e.origin == "api" else ""))
            continue
        scope[e.config.name] = e
    configs = scoped_set(
        [e.config for e in cluster.values()],
        {ns: [e.config for e in by_name.values()] for ns, by_name in namespaced.items()},
        prefix, native_sidecars,
    )
    return configs, problems


def parse_documents(documents: Iterable[tuple[str, Any]], *, prefix: str = DEFAULT_PREFIX,
                    schema: PodSchema | None = None) -> ConfigSet:
    """Like :func:`~sidecar_injector.core.parse.parse_configs`, for both kinds: every problem of
    every document at once (ConfigError), duplicates included."""
    entries: list[Entry] = []
    lines: list[str] = []
    for source, doc in documents:
        if doc is None:
            continue
        try:
            entries.append(parse_object(doc, source, schema=schema))
        except ConfigError as e:
            lines.extend(str(e).splitlines())
    seen: dict[tuple[str | None, str], Entry] = {}
    for entry in entries:
        k = (entry.namespace, entry.config.name)
        if k in seen:
            lines.append(f"{entry.config.source}: metadata.name: {entry.config.name!r} is already defined in "
                         f"{seen[k].config.source}")
        seen.setdefault(k, entry)
    if lines:
        raise ConfigError("\n".join(lines))
    configs, _ = build_set(entries, prefix, schema.native_sidecars if schema is not None else True)
    return configs


# ---- the validating webhook (/validate-config) ----


def validation_review(body: bytes, *, schema: PodSchema | None) -> bytes:
    """An AdmissionReview for one of the two kinds in, the answer out: refused with every problem,
    file-free, one per line. Raises ValueError for a body that is not an AdmissionReview."""
    review = orjson.loads(body)
    if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
        raise ValueError("not an AdmissionReview (no request)")
    request = review["request"]
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError("AdmissionReview request.uid is missing")
    api_version = review.get("apiVersion") if review.get("apiVersion") in (
        "admission.k8s.io/v1", "admission.k8s.io/v1beta1") else "admission.k8s.io/v1"
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    obj = request.get("object")
    kind = (request.get("kind") or {}).get("kind") if isinstance(request.get("kind"), dict) else None
    if request.get("operation") in ("CREATE", "UPDATE") and isinstance(obj, dict) and kind in KINDS:
        meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
        if not meta.get("deletionTimestamp"):
            if kind == NAMESPACED_KIND and not meta.get("namespace") and request.get("namespace"):
                obj = {**obj, "metadata": {**meta, "namespace": request["namespace"]}}
            _, problems = check_object(obj, schema=schema)
            if problems:
                name = meta.get("name") or ""
                what = describe(kind, str(name), request.get("namespace") if kind == NAMESPACED_KIND else None)
                response["allowed"] = False
                response["status"] = {
                    "code": 422, "reason": "Invalid",
                    "message": f"{what} is invalid:\n" + "\n".join(problems),
                }
    return orjson.dumps({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})

