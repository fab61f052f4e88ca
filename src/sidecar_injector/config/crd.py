"""The two CustomResourceDefinitions, generated from the schema the loader validates against.

One source of truth: the fragments of ``spec`` (containers, volumes, env, ...) take their
structural OpenAPI schema from the same strict Kubernetes Pod schema (``kubernetes-validate``)
that :mod:`sidecar_injector.config.schema` checks configs against, converted to a *structural* schema
(no ``$ref``, a type on every node, no ``oneOf`` types); the SidecarConfig's own fields
(:data:`~sidecar_injector.core.config.SPEC_FIELDS`) are described here, and a unit test fails when
the two lists differ. Unknown fields are then pruned by the apiserver, and refused under
``kubectl apply --validate=strict`` (server-side field validation).

Templates: any scalar of a config may be a Jinja2 template (a string), and the loader converts
the rendered text to the field's type. So the CRD accepts a string wherever the Pod schema has
an integer or a number (``x-kubernetes-int-or-string``), and a boolean field accepts anything
scalar (``x-kubernetes-preserve-unknown-fields`` on a leaf: structural schemas have no
"bool-or-string"). The validating webhook (``/validate-config``) then runs the loader's full
validation, which the CRD schema alone cannot express.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from sidecar_injector import kubeschemas
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core.config import HOST_NETWORK_MODES, RUN_TO_COMPLETION_MODES, SPEC_FIELDS

__all__ = [
    "CLUSTER_KIND",
    "GROUP",
    "KINDS",
    "NAMESPACED_KIND",
    "PLURALS",
    "VERSION",
    "crds",
    "spec_schema",
]

GROUP = "sidecar-injector.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CLUSTER_KIND = "ClusterSidecarConfig"
NAMESPACED_KIND = "SidecarConfig"
KINDS = (CLUSTER_KIND, NAMESPACED_KIND)
PLURALS = {CLUSTER_KIND: "clustersidecarconfigs", NAMESPACED_KIND: "sidecarconfigs"}
SHORT_NAMES = {CLUSTER_KIND: ["cscfg"], NAMESPACED_KIND: ["scfg"]}
CATEGORIES = ["sidecar-injector"]
#: The Lease (in the server's namespace) whose holder writes the objects' status.
LEASE_NAME = "sidecar-injector-status"

_POD_DEFS = "io.k8s.api.core.v1."
#: Where each Kubernetes fragment of ``spec`` takes its item schema from.
_FRAGMENTS = {
    "initContainers": "Container",
    "containers": "Container",
    "volumes": "Volume",
    "volumeMounts": "VolumeMount",
    "env": "EnvVar",
    "imagePullSecrets": "LocalObjectReference",
}

_DESCRIPTIONS = {
    "injectByDefault": "true: every pod the webhook is called for gets it, unless it opts out.",
    "selector": "A LabelSelector on the pod's labels.",
    "namespaces": "Namespace names it may be injected into; empty means all. ClusterSidecarConfig "
                  "only: a SidecarConfig applies to its own namespace and may not set it.",
    "matchConditions": "CEL expressions over `object` (the pod); the config applies only when all are true.",
    "hostNetwork": "Pods with hostNetwork: true: skip (default) or inject.",
    "runToCompletion": "Pods with restartPolicy Never/OnFailure: native (default), skip or inject.",
    "labels": "Added to the pod; the pod's existing keys win. Values may be templates.",
    "annotations": "Added to the pod; the pod's existing keys win. Values may be templates.",
    "initContainers": "Run before the pod's own init containers, in this order.",
    "containers": "The sidecars.",
    "nativeSidecar": "true: `containers` go into initContainers with restartPolicy: Always.",
    "volumes": "Volumes added to the pod.",
    "volumeMounts": "Added to each of the pod's own regular containers lacking that mountPath.",
    "env": "Added to each of the pod's own regular containers lacking a variable of that name.",
    "imagePullSecrets": "Added to the pod.",
}


@functools.cache
def _defs(kube_version: str) -> dict[str, Any]:
    defs: dict[str, Any] = kubeschemas.load(kube_version)[1]["$defs"]
    return defs


class _Converter:
    """JSON Schema (kubernetes-validate, strict) -> structural OpenAPI v3 (apiextensions)."""

    def __init__(self, defs: dict[str, Any], descriptions: bool) -> None:
        self.defs = defs
        self.descriptions = descriptions

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def convert(self, node: Any, depth: int = 0) -> dict[str, Any]:
        if depth > 40:
            raise ValueError("schema too deep (recursive definition?)")
        node = self.resolve(node)
        out: dict[str, Any] = {}
        if self.descriptions and isinstance(node.get("description"), str):
            out["description"] = node["description"]
        types = _types(node)
        if "oneOf" in node or "anyOf" in node:
            alternatives = set()
            for alt in node.get("oneOf") or node.get("anyOf") or []:
                alternatives |= _types(self.resolve(alt))
            types = alternatives
        if "object" in types or "properties" in node:
            out["type"] = "object"
            props = node.get("properties")
            if isinstance(props, dict):
                out["properties"] = {k: self.convert(v, depth + 1) for k, v in sorted(props.items())}
                required = [r for r in node.get("required") or [] if r in props]
                if required:
                    out["required"] = sorted(required)
            elif isinstance(node.get("additionalProperties"), dict):
                out["additionalProperties"] = self.convert(node["additionalProperties"], depth + 1)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
            return out
        if "array" in types:
            out["type"] = "array"
            out["items"] = self.convert(node.get("items") or {}, depth + 1)
            return out
        if types & {"integer", "number"}:
            # A number, or a template rendering one (or an int-or-string, a quantity).
            out["x-kubernetes-int-or-string"] = True
            return out
        if "boolean" in types:
            out["x-kubernetes-preserve-unknown-fields"] = True  # true/false, or a template
            return out
        out["type"] = "string"
        if isinstance(node.get("enum"), list):
            out["enum"] = [e for e in node["enum"] if e is not None]
        return out


def _types(node: Any) -> set[str]:
    t = node.get("type") if isinstance(node, dict) else None
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str) and x != "null"}
    return set()


@functools.cache
def _spec_schema(kube_version: str, descriptions: bool) -> str:
    conv = _Converter(_defs(kube_version), descriptions)

    def fragment(kind: str) -> dict[str, Any]:
        return {"type": "array", "items": conv.convert({"$ref": f"#/$defs/{_POD_DEFS}{kind}"})}

    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    props: dict[str, Any] = {
        "injectByDefault": {"type": "boolean"},
        "selector": conv.convert({"$ref": "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"}),
        "namespaces": {"type": "array", "items": {"type": "string"}},
        "matchConditions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["expression", "name"],
                "properties": {"name": {"type": "string"}, "expression": {"type": "string"}},
            },
        },
        "hostNetwork": {"type": "string", "enum": list(HOST_NETWORK_MODES)},
        "runToCompletion": {"type": "string", "enum": list(RUN_TO_COMPLETION_MODES)},
        "labels": string_map,
        "annotations": string_map,
        "nativeSidecar": {"type": "boolean"},
        **{key: fragment(kind) for key, kind in _FRAGMENTS.items()},
    }
    for key, text in _DESCRIPTIONS.items():
        props[key] = {"description": text, **{k: v for k, v in props[key].items() if k != "description"}}
    ordered = {k: props[k] for k in SPEC_FIELDS}
    return json.dumps({"type": "object", "description": "What to inject, and into which pods.",
                       "properties": ordered})


def spec_schema(kube_version: str = DEFAULT_KUBE_VERSION, descriptions: bool = False) -> dict[str, Any]:
    """The structural schema of ``spec`` (a fresh copy)."""
    if kube_version.count(".") == 1:
        kube_version += ".0"
    loaded: dict[str, Any] = json.loads(_spec_schema(kube_version, descriptions))
    return loaded


def _status_schema() -> dict[str, Any]:
    condition = {
        "type": "object",
        "required": ["lastTransitionTime", "message", "reason", "status", "type"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "description": "Written by the injector (one replica at a time).",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "conditions": {
                "type": "array",
                "items": condition,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


def crd(kind: str, kube_version: str = DEFAULT_KUBE_VERSION, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind`` (ClusterSidecarConfig or SidecarConfig)."""
    plural = PLURALS[kind]
    columns = [
        {"name": "Default", "type": "boolean", "jsonPath": ".spec.injectByDefault",
         "description": "Injected into every pod that does not opt out"},
        {"name": "Selector", "type": "string", "jsonPath": ".spec.selector",
         "description": "The pod label selector", "priority": 1},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason",
         "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    if kind == CLUSTER_KIND:
        columns.insert(1, {"name": "Namespaces", "type": "string", "jsonPath": ".spec.namespaces",
                           "priority": 1})
    schema = {
        "type": "object",
        "description": (
            "Sidecars to inject into pods in any namespace its namespaces and selectors allow."
            if kind == CLUSTER_KIND else
            "Sidecars a team injects into pods of its own namespace (shadows a ClusterSidecarConfig "
            "of the same name there)."
        ),
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(kube_version),
            "status": _status_schema(),
        },
    }
    meta: dict[str, Any] = {"name": f"{plural}.{GROUP}"}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta,
        "spec": {
            "group": GROUP,
            "scope": "Cluster" if kind == CLUSTER_KIND else "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": SHORT_NAMES[kind],
                "categories": CATEGORIES,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def crds(kube_version: str = DEFAULT_KUBE_VERSION, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Both CRDs, cluster kind first."""
    return [crd(kind, kube_version, labels) for kind in KINDS]
