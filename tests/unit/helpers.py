"""Small builders shared by the unit tests."""

from __future__ import annotations

import json
from typing import Any

from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.parse import parse_configs

_SCHEMA = pod_schema()


def cfg(name: str = "envoy", validate: bool = True, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
            "metadata": {"name": name}, "spec": spec}


def configs(*docs: dict[str, Any], validate: bool = True, prefix: str = "sidecar-injector.io") -> ConfigSet:
    return parse_configs(
        [(f"test.yaml, document {i + 1}", d) for i, d in enumerate(docs)],
        prefix=prefix,
        schema=_SCHEMA if validate else None,
    )


def pod(containers: list[str] | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": n, "image": f"{n}:1"} for n in (containers or ["app"])]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-", **meta}, "spec": spec}


def review_body(obj: Any, *, operation: str = "CREATE", version: str = "v1", uid: str = "uid-1",
                namespace: str = "ns", kind: str = "Pod", resource: str = "pods") -> bytes:
    return json.dumps({
        "apiVersion": f"admission.k8s.io/{version}", "kind": "AdmissionReview",
        "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                    "resource": {"group": "", "version": "v1", "resource": resource},
                    "namespace": namespace, "operation": operation, "object": obj},
    }).encode()


SIDECAR = {"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}
