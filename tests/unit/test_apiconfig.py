"""The two kinds (apiconfig): files and API objects, the tenancy rule, file-free messages, the
validating webhook's answers, and CRD schemas generated from the loader's schema (no drift)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar_injector.config import apiconfig, configload, crd
from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core.config import SPEC_FIELDS
from sidecar_injector.core.errors import ConfigError

SCHEMA = pod_schema()
SIDECAR = {"name": "proxy", "image": "envoy:1"}


def obj(kind: str = "ClusterSidecarConfig", name: str = "envoy", namespace: str | None = None,
        **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": kind, "metadata": meta,
            "spec": spec or {"injectByDefault": True, "containers": [SIDECAR]}}


def review(o: dict[str, Any], operation: str = "CREATE", namespace: str = "") -> dict[str, Any]:
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u1", "kind": {"group": "sidecar-injector.io", "version": "v1alpha1", "kind": o["kind"]},
        "operation": operation, "namespace": namespace, "object": o}}).encode()
    out: dict[str, Any] = json.loads(apiconfig.validation_review(body, schema=SCHEMA))["response"]
    return out


def test_files_accept_both_kinds_and_namespaced_sidecarconfigs(tmp_path: Path) -> None:
    docs = [obj("ClusterSidecarConfig", "a"), obj("SidecarConfig", "b"), obj("SidecarConfig", "a", "team-x")]
    f = tmp_path / "c.yaml"
    f.write_text("\n---\n".join(json.dumps(d) for d in docs))
    cs = configload.load_configs(f)
    assert [c.name for c in cs.configs] == ["a", "b"]
    assert cs.for_namespace("team-x").by_name["a"].namespaces == frozenset({"team-x"})
    assert cs.for_namespace("other").by_name["a"].namespaces == frozenset()


def test_a_namespaced_sidecarconfig_naming_namespaces_is_refused_with_the_field() -> None:
    with pytest.raises(ConfigError, match=r"c.yaml, document 1 \(envoy\): spec.namespaces: a SidecarConfig "
                                          r"applies only to pods in its own namespace \(team-a\)"):
        apiconfig.parse_documents([("c.yaml, document 1", obj("SidecarConfig", "envoy", "team-a",
                                                              namespaces=["team-b"], containers=[SIDECAR]))],
                                  schema=SCHEMA)


def test_wrong_kind_names_both_kinds() -> None:
    with pytest.raises(ConfigError, match="kind: must be 'ClusterSidecarConfig' or 'SidecarConfig', got 'Pod'"):
        apiconfig.parse_documents([("x", {**obj(), "kind": "Pod"})], schema=SCHEMA)


def test_webhook_refuses_with_every_problem_file_free() -> None:
    bad = obj(containers=[{"name": "Bad_Name", "image": "x", "imagePullPolicyy": "Always"}])
    r = review(bad)
    assert r["allowed"] is False and r["status"]["code"] == 422
    lines = r["status"]["message"].splitlines()
    assert lines[0] == "ClusterSidecarConfig envoy is invalid:"
    assert "spec.containers[0].imagePullPolicyy: unknown field" in lines
    assert any(line.startswith("spec.containers[0].name: Invalid value: \"Bad_Name\"") for line in lines)
    assert not any("\x00" in line for line in lines)


def test_webhook_tenancy_cel_and_templates() -> None:
    r = review(obj("SidecarConfig", "envoy", "team-a", namespaces=["team-b"], containers=[SIDECAR]),
               namespace="team-a")
    assert r["allowed"] is False and "spec.namespaces: a SidecarConfig applies only" in r["status"]["message"]
    r = review(obj(containers=[SIDECAR], matchConditions=[{"name": "x", "expression": "object.spec.("}]))
    assert r["allowed"] is False and "spec.matchConditions[0].expression" in r["status"]["message"]
    r = review(obj(containers=[SIDECAR], labels={"v": "{{ anotations['x'] }}"}))
    assert r["allowed"] is False and "spec.labels" in r["status"]["message"]
    assert review(obj())["allowed"] is True
    assert review(obj(), operation="DELETE")["allowed"] is True
    ok = obj(containers=[{**SIDECAR, "ports": [{"containerPort": "{{ annotations['p'] | default('8080') }}"}]}])
    assert review(ok)["allowed"] is True


def test_webhook_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        apiconfig.validation_review(b"[]", schema=SCHEMA)


def test_duplicates_between_files_and_api_keep_the_file_and_report_the_object() -> None:
    f = apiconfig.parse_object(obj(), "f.yaml, document 1", schema=SCHEMA)
    a, problems = apiconfig.check_object(obj(), schema=SCHEMA)
    assert a is not None and not problems
    a = apiconfig.Entry(a.config, a.namespace, a.key, "api")
    cs, dup = apiconfig.build_set([f, a])
    assert cs.by_name["envoy"].source == "f.yaml, document 1"
    assert "already defined by f.yaml, document 1 (files win)" in dup["ClusterSidecarConfig/envoy"]


# ---- CRDs ----


def test_crd_spec_fields_are_the_loaders() -> None:
    for c in crd.crds():
        spec = c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert list(spec["properties"]) == list(SPEC_FIELDS)


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for k, v in (node.get("properties") or {}).items():
        out += _walk(v, f"{path}.{k}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_crd_schema_is_structural_and_follows_the_pod_schema() -> None:
    spec = crd.spec_schema()
    for path, node in _walk(spec):
        assert "$ref" not in node and "oneOf" not in node and "anyOf" not in node, path
        assert node.get("type") or node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"), path
        assert not ("properties" in node and "additionalProperties" in node), path
    # Every container field the loader's schema knows is in the CRD, with a template-friendly
    # type where the field is not a string (one source of truth: a drift fails here).
    container = spec["properties"]["containers"]["items"]["properties"]
    for field in ("image", "ports", "resources", "startupProbe", "restartPolicy", "securityContext"):
        assert field in container
    assert SCHEMA.scalar_types(("spec", "containers", 0, "ports", 0, "containerPort")) == frozenset({"integer"})
    assert container["ports"]["items"]["properties"]["containerPort"] == {"x-kubernetes-int-or-string": True}
    assert container["stdin"] == {"x-kubernetes-preserve-unknown-fields": True}
    for key, root in (("containers", ("spec", "containers")), ("volumes", ("spec", "volumes")),
                      ("env", ("spec", "containers", 0, "env"))):
        for path, node in _walk(spec["properties"][key]["items"]):
            parts: list[str | int] = [0 if p == "" else p for p in path.replace("[]", ".").split(".")[1:]]
            if "{}" in path or not parts:
                continue
            types = SCHEMA.scalar_types((*root, 0, *parts))
            if not types:
                continue
            if types & {"integer", "number"}:
                assert node.get("x-kubernetes-int-or-string"), path
            elif types == {"boolean"}:
                assert node.get("x-kubernetes-preserve-unknown-fields"), path
            else:
                assert node.get("type") == "string", path


def test_crd_names_columns_and_scope() -> None:
    cluster, namespaced = crd.crds()
    assert cluster["metadata"]["name"] == "clustersidecarconfigs.sidecar-injector.io"
    assert cluster["spec"]["scope"] == "Cluster" and namespaced["spec"]["scope"] == "Namespaced"
    assert namespaced["metadata"]["name"] == "sidecarconfigs.sidecar-injector.io"
    cols = [c["name"] for c in namespaced["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert cols[:1] == ["Default"] and "Ready" in cols and cols[-1] == "Age"
    assert namespaced["spec"]["names"]["shortNames"] and namespaced["spec"]["names"]["categories"]
    assert len(json.dumps(cluster)) < 200_000  # fits kubectl apply's last-applied annotation
