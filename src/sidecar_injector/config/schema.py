"""Strict validation of Kubernetes fragments against the published OpenAPI schemas.

The apiserver decodes a patched pod non-strictly and drops unknown fields, so a typo such
as ``restartPolicyy`` in a config would vanish silently in the cluster. We validate the
config's fragments, wrapped in a Pod, against the strict Pod schema (kubernetes-validate's,
pruned to what a Pod reaches: :mod:`sidecar_injector.kubeschemas`), reporting **every** error
(not the first), and answer the
core's other question: which JSON type a field has, so that a template standing in an
integer or boolean field can be converted after rendering (see ``core.typing``).

The schema is loaded and compiled once per Kubernetes version.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from sidecar_injector import kubeschemas
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.core.parse import Path, PodSchema

#: The Kubernetes version whose schemas configs are checked against; ``--kube-version``.
DEFAULT_KUBE_VERSION = "1.37.0"

#: Native sidecars (init containers with ``restartPolicy: Always``) are on by default from 1.29.
NATIVE_SIDECARS_SINCE = (1, 29)

_SCALARS = frozenset({"string", "integer", "number", "boolean"})


def _known_versions() -> list[str]:
    return list(kubeschemas.versions())


class _Schema:
    """:class:`PodSchema` for one Kubernetes version."""

    def __init__(self, version: str) -> None:
        import jsonschema
        from referencing import Registry, Resource

        pod, defs = kubeschemas.load(version)
        registry: Registry[Any] = Resource.from_contents(defs) @ (Resource.from_contents(pod) @ Registry())
        self._validator = jsonschema.validators.Draft202012Validator(pod, registry=registry)
        self._pod = pod
        self._defs: dict[str, Any] = defs["$defs"]
        self.version = version
        self._types: dict[Path, frozenset[str]] = {}
        major, minor = (int(x) for x in version.split(".")[:2])
        self.native_sidecars = (major, minor) >= NATIVE_SIDECARS_SINCE

    def errors(self, pod: dict[str, Any]) -> list[tuple[Path, str]]:
        out: list[tuple[Path, str]] = []
        for e in self._validator.iter_errors(pod):
            out.extend(_leaf_errors(e))
        return sorted(set(out), key=lambda pm: ([str(p) for p in pm[0]], pm[1]))

    def scalar_types(self, path: Path) -> frozenset[str]:
        key = tuple(0 if isinstance(p, int) else p for p in path)
        found = self._types.get(key)
        if found is None:
            found = self._types[key] = _scalar_types(self._node(key))
        return found

    def _node(self, path: Path) -> Any:
        node: Any = self._pod
        for key in path:
            node = self._resolve(node)
            if not isinstance(node, dict):
                return None
            if isinstance(key, int):
                node = node.get("items")
            else:
                props = node.get("properties")
                if isinstance(props, dict) and key in props:
                    node = props[key]
                elif isinstance(node.get("additionalProperties"), dict):
                    node = node["additionalProperties"]
                else:
                    return None
        return self._resolve(node)

    def _resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self._defs.get(node["$ref"].rsplit("/", 1)[-1])
        return node


def _scalar_types(node: Any) -> frozenset[str]:
    """The scalar JSON types a schema node accepts (``oneOf`` alternatives included)."""
    if not isinstance(node, dict):
        return frozenset()
    types: set[str] = set()
    t = node.get("type")
    if isinstance(t, str):
        types.add(t)
    elif isinstance(t, list):
        types.update(x for x in t if isinstance(x, str))
    for key in ("oneOf", "anyOf"):
        for alt in node.get(key) or []:
            types |= _scalar_types(alt)
    if "properties" in node or "items" in node:
        return frozenset()  # an object or array: no template can stand for it
    return frozenset(types & _SCALARS)


def _leaf_errors(e: Any) -> list[tuple[Path, str]]:
    """The useful errors under one jsonschema error.

    ``oneOf`` (int-or-string, quantities) reports one error per alternative: the value fits
    none, say so once. ``additionalProperties`` names the unexpected keys: report each at its
    own path, so a user sees ``spec.containers[0].imagePullPolicyy: unknown field``.
    """
    path: Path = tuple(e.absolute_path)
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        allowed = e.schema.get("properties") or {}
        extra = [k for k in e.instance if k not in allowed]
        if extra:
            return [((*path, k), "unknown field") for k in extra]
    if e.validator == "oneOf":
        kinds = sorted(_scalar_types(e.schema))
        return [(path, f"{json.dumps(e.instance)[:80]} is not of type {' or '.join(kinds)}")]
    return [(path, str(e.message)[:300])]


@functools.cache
def pod_schema(kube_version: str = DEFAULT_KUBE_VERSION) -> PodSchema:
    """The Pod schema of ``kube_version`` (``1.37`` or ``1.37.0``); raises ConfigError if unknown."""
    if kube_version.count(".") == 1:
        kube_version += ".0"
    known = _known_versions()
    if kube_version not in known:
        raise ConfigError(f"--kube-version {kube_version}: no schemas for it (known: {', '.join(known)})")
    return _Schema(kube_version)
