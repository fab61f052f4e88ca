"""core.podrules: the apiserver's Pod rules beyond the schema, one accepted and one refused case
per rule. ``CASES`` is shared with tests/e2e/test_podrules_apiserver.py, which asserts that the
real kube-apiserver accepts exactly the pods ``check_pod`` finds no problem in.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar_injector.core.podrules import (
    check_annotations,
    check_container,
    check_labels,
    check_pod,
    check_volume,
    format_path,
    format_problem,
)
from sidecar_injector.core.quantity import parse_quantity

ROOT = Path(__file__).resolve().parents[2]


class Case(NamedTuple):
    id: str
    pod: dict[str, Any]
    ok: bool
    where: str = ""  # for a refused case: part of the path of (one of) its problems


def ctr(name: str = "app", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox:1.36", **fields}


def sidecar(name: str = "proxy", **fields: Any) -> dict[str, Any]:
    return ctr(name, restartPolicy="Always", **fields)


def mkpod(
    *containers: dict[str, Any],
    init: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "podrules"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    body: dict[str, Any] = {"containers": list(containers) or [ctr()], **spec}
    if init is not None:
        body["initContainers"] = init
    if volumes is not None:
        body["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def c_with(**fields: Any) -> dict[str, Any]:
    """A pod whose one container has these fields."""
    return mkpod(ctr(**fields))


def res(requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    return c_with(resources={k: v for k, v in (("requests", requests), ("limits", limits)) if v is not None})


def env(*variables: dict[str, Any], volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return mkpod(ctr(env=list(variables)), volumes=volumes)


def field_ref(path: str, **extra: Any) -> dict[str, Any]:
    return {"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path, **extra}}}


def mounts(*ms: dict[str, Any], volumes: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    vols = volumes if volumes is not None else [{"name": "data", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
    return mkpod(ctr(volumeMounts=list(ms), **fields), volumes=vols)


def vol(**fields: Any) -> dict[str, Any]:
    return mkpod(volumes=[{"name": "v", **fields}])


def probe(kind: str = "readinessProbe", **handler: Any) -> dict[str, Any]:
    return c_with(**{kind: handler or {"tcpSocket": {"port": 80}}})


HTTP = {"httpGet": {"port": 8080}}
SLEEP = {"preStop": {"sleep": {"seconds": 5}}}
BIG = 256 * 1024

CASES: list[Case] = [
    # -- metadata.labels
    Case("label-prefixed-key", mkpod(labels={"example.com/app": "web", "tier": ""}), True),
    Case("label-key-space", mkpod(labels={"Bad Key": "x"}), False, "labels"),
    Case("label-key-empty-prefix", mkpod(labels={"/app": "x"}), False, "labels"),
    Case("label-key-two-slashes", mkpod(labels={"a/b/c": "x"}), False, "labels"),
    Case("label-key-name-63", mkpod(labels={"k" * 63: "x"}), True),
    Case("label-key-name-64", mkpod(labels={"k" * 64: "x"}), False, "labels"),
    Case("label-key-uppercase-prefix", mkpod(labels={"Example.com/app": "x"}), False, "labels"),
    Case("label-value-63", mkpod(labels={"a": "v" * 63}), True),
    Case("label-value-64", mkpod(labels={"a": "v" * 64}), False, "labels"),
    Case("label-value-leading-dash", mkpod(labels={"a": "-v"}), False, "labels"),
    Case("label-value-inner-dot-underscore", mkpod(labels={"a": "v_1.2-x"}), True),
    # -- metadata.annotations
    Case("annotation-key-uppercase-prefix", mkpod(annotations={"Example.COM/Key": "x"}), True),
    Case("annotation-key-space", mkpod(annotations={"a b": "x"}), False, "annotations"),
    Case("annotations-size-at-limit", mkpod(annotations={"k": "v" * (BIG - 1)}), True),
    Case("annotations-size-over-limit", mkpod(annotations={"k": "v" * BIG}), False, "annotations"),
    Case("annotations-size-in-bytes", mkpod(annotations={"k": "é" * (BIG // 2)}), False, "annotations"),
    Case("deletion-cost-int", mkpod(annotations={"controller.kubernetes.io/pod-deletion-cost": "-10"}), True),
    Case(
        "deletion-cost-plus",
        mkpod(annotations={"controller.kubernetes.io/pod-deletion-cost": "+10"}),
        False,
        "pod-deletion-cost",
    ),
    Case(
        "apparmor-annotation-known",
        mkpod(annotations={"container.apparmor.security.beta.kubernetes.io/app": "runtime/default"}),
        True,
    ),
    Case(
        "apparmor-annotation-unknown-container",
        mkpod(annotations={"container.apparmor.security.beta.kubernetes.io/nope": "runtime/default"}),
        False,
        "apparmor",
    ),
    # -- container names and images
    Case("container-name-ok", mkpod(ctr("sidecar-1")), True),
    Case("container-name-underscore", mkpod(ctr("Sidecar_1")), False, "containers[0].name"),
    Case("container-name-dot", mkpod(ctr("a.b")), False, "containers[0].name"),
    Case("container-name-63", mkpod(ctr("a" * 63)), True),
    Case("container-name-64", mkpod(ctr("a" * 64)), False, "containers[0].name"),
    Case("container-names-duplicate", mkpod(ctr("app"), ctr("app")), False, "containers[1].name"),
    Case("container-name-shared-with-init", mkpod(ctr("app"), init=[ctr("app")]), False, "initContainers[0].name"),
    Case(
        "container-name-shared-with-sidecar", mkpod(ctr("app"), init=[sidecar("app")]), False, "initContainers[0].name"
    ),
    Case("image-padded", mkpod({"name": "app", "image": " busybox"}), False, "image"),
    Case("image-pull-policy-bad", c_with(imagePullPolicy="Sometimes"), False, "imagePullPolicy"),
    Case("termination-message-policy-ok", c_with(terminationMessagePolicy="FallbackToLogsOnError"), True),
    # -- ports
    Case("port-name-ok", c_with(ports=[{"containerPort": 80, "name": "http-alt"}]), True),
    Case("port-name-15", c_with(ports=[{"containerPort": 80, "name": "a" * 15}]), True),
    Case("port-name-16", c_with(ports=[{"containerPort": 80, "name": "a" * 16}]), False, "ports[0].name"),
    Case("port-name-uppercase", c_with(ports=[{"containerPort": 80, "name": "HTTP"}]), False, "ports[0].name"),
    Case("port-name-digits-only", c_with(ports=[{"containerPort": 80, "name": "8080"}]), False, "ports[0].name"),
    Case("port-name-double-hyphen", c_with(ports=[{"containerPort": 80, "name": "a--b"}]), False, "ports[0].name"),
    Case("port-name-trailing-hyphen", c_with(ports=[{"containerPort": 80, "name": "ab-"}]), False, "ports[0].name"),
    Case(
        "port-names-duplicate",
        c_with(ports=[{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]),
        False,
        "ports[1].name",
    ),
    Case("container-port-max", c_with(ports=[{"containerPort": 65535}]), True),
    Case("container-port-zero", c_with(ports=[{"containerPort": 0}]), False, "containerPort"),
    Case("container-port-too-big", c_with(ports=[{"containerPort": 65536}]), False, "containerPort"),
    Case("host-port-too-big", c_with(ports=[{"containerPort": 80, "hostPort": 70000}]), False, "hostPort"),
    Case("protocol-sctp", c_with(ports=[{"containerPort": 80, "protocol": "SCTP"}]), True),
    Case("protocol-lowercase", c_with(ports=[{"containerPort": 80, "protocol": "tcp"}]), False, "protocol"),
    Case("container-port-repeated-is-a-warning", c_with(ports=[{"containerPort": 80}, {"containerPort": 80}]), True),
    Case(
        "same-port-other-protocol",
        c_with(ports=[{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53, "protocol": "TCP"}]),
        True,
    ),
    Case(
        "host-port-conflict-across-containers",
        mkpod(
            ctr("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
            ctr("b", ports=[{"containerPort": 81, "hostPort": 8080, "protocol": "TCP"}]),
        ),
        False,
        "hostPort",
    ),
    Case(
        "host-port-other-protocol",
        mkpod(
            ctr("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
            ctr("b", ports=[{"containerPort": 81, "hostPort": 8080, "protocol": "UDP"}]),
        ),
        True,
    ),
    Case(
        "host-port-reused-by-init",
        mkpod(
            ctr("a", ports=[{"containerPort": 80, "hostPort": 8080}]),
            init=[ctr("i", ports=[{"containerPort": 80, "hostPort": 8080}])],
        ),
        True,
    ),
    # -- resources
    Case(
        "quantities-ok",
        res({"cpu": "100m", "memory": "1.5Gi", "ephemeral-storage": "1e3"}, {"cpu": "1", "memory": "2Gi"}),
        True,
    ),
    Case("quantities-odd-but-valid", res({"cpu": ".5", "memory": "+128974848"}, {"cpu": "1.", "memory": "1E"}), True),
    Case("quantities-as-numbers", res({"cpu": 0.5, "memory": 1000}, {"cpu": 2}), True),
    Case("quantity-exponent-suffix", res({"memory": "129e6"}), True),
    Case("quantity-bad-suffix", res({"memory": "1K"}), False, "memory"),
    Case("quantity-not-a-number", res({"cpu": "lots"}), False, "cpu"),
    Case("quantity-dangling-exponent", res({"cpu": "1e"}), False, "cpu"),
    Case("quantity-negative", res({"cpu": "-1"}), False, "cpu"),
    Case("requests-over-limits", res({"cpu": "2"}, {"cpu": "1"}), False, "requests"),
    Case(
        "requests-equal-limits-other-units",
        res({"cpu": "1000m", "memory": "1Gi"}, {"cpu": "1", "memory": "1024Mi"}),
        True,
    ),
    Case("resource-unknown", res({"gpu": "1"}), False, "gpu"),
    Case("resource-not-for-containers", res({"pods": "1"}), False, "pods"),
    Case("resource-extended", res(None, {"example.com/gpu": "1"}), True),
    Case("resource-extended-request-without-limit", res({"example.com/gpu": "1"}), False, "limits"),
    Case(
        "resource-extended-request-not-limit",
        res({"example.com/gpu": "1"}, {"example.com/gpu": "2"}),
        False,
        "requests",
    ),
    Case("resource-extended-fraction", res(None, {"example.com/gpu": "500m"}), False, "example.com/gpu"),
    Case("resource-hugepages", res(None, {"hugepages-2Mi": "4Mi", "memory": "1Gi"}), True),
    Case("resource-hugepages-alone", res(None, {"hugepages-2Mi": "4Mi"}), False, "resources"),
    Case("resource-hugepages-indivisible", res(None, {"hugepages-2Mi": "3Mi", "memory": "1Gi"}), False, "hugepages"),
    # -- env
    Case("env-relaxed-names", env({"name": "MY VAR.1", "value": "x"}, {"name": "1ABC"}, {"name": "a-b"}), True),
    Case("env-name-with-equals", env({"name": "A=B", "value": "x"}), False, "env[0].name"),
    Case("env-name-non-ascii", env({"name": "ÉTÉ", "value": "x"}), False, "env[0].name"),
    Case("env-name-empty", env({"name": "", "value": "x"}), False, "env[0].name"),
    Case(
        "env-field-ref", env(field_ref("metadata.name"), field_ref("spec.nodeName"), field_ref("status.podIPs")), True
    ),
    Case(
        "env-field-ref-label", env(field_ref("metadata.labels['app']"), field_ref("metadata.annotations['A/b']")), True
    ),
    Case("env-field-ref-unsupported", env(field_ref("status.phase")), False, "fieldRef"),
    Case("env-field-ref-bad-label-key", env(field_ref("metadata.labels['a b']")), False, "fieldRef"),
    Case("env-field-ref-bad-api-version", env(field_ref("metadata.name", apiVersion="v2")), False, "fieldRef"),
    Case(
        "env-value-and-value-from",
        env({"name": "V", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        False,
        "valueFrom",
    ),
    Case("env-value-from-empty", env({"name": "V", "valueFrom": {}}), False, "valueFrom"),
    Case(
        "env-value-from-two-sources",
        env(
            {
                "name": "V",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"name": "s", "key": "k"}},
            }
        ),
        False,
        "valueFrom",
    ),
    Case(
        "env-secret-key-ref",
        env(
            {"name": "V", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "pass.word"}}},
            {"name": "W", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "K_1"}}},
        ),
        True,
    ),
    Case(
        "env-secret-key-ref-no-name",
        env({"name": "V", "valueFrom": {"secretKeyRef": {"key": "k"}}}),
        False,
        "secretKeyRef.name",
    ),
    Case(
        "env-config-map-key-bad",
        env({"name": "V", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a/b"}}}),
        False,
        "configMapKeyRef.key",
    ),
    Case(
        "env-resource-field-ref",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}),
        True,
    ),
    Case(
        "env-resource-field-ref-unknown",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}),
        False,
        "resource",
    ),
    Case(
        "env-resource-field-ref-bad-divisor",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "2m"}}}),
        False,
        "divisor",
    ),
    Case(
        "env-file-key-ref",
        env(
            {"name": "V", "valueFrom": {"fileKeyRef": {"volumeName": "cfg", "path": "app.env", "key": "TOKEN"}}},
            volumes=[{"name": "cfg", "emptyDir": {}}],
        ),
        True,
    ),
    Case(
        "env-file-key-ref-not-empty-dir",
        env(
            {"name": "V", "valueFrom": {"fileKeyRef": {"volumeName": "cfg", "path": "app.env", "key": "TOKEN"}}},
            volumes=[{"name": "cfg", "configMap": {"name": "c"}}],
        ),
        False,
        "volumeName",
    ),
    Case(
        "env-from-ok",
        c_with(
            envFrom=[{"prefix": "CFG_", "configMapRef": {"name": "app-config"}}, {"secretRef": {"name": "app-secret"}}]
        ),
        True,
    ),
    Case(
        "env-from-both", c_with(envFrom=[{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]), False, "envFrom"
    ),
    Case("env-from-bad-name", c_with(envFrom=[{"configMapRef": {"name": "Bad_Name"}}]), False, "configMapRef"),
    # -- volume mounts
    Case(
        "mounts-ok",
        mounts(
            {"name": "data", "mountPath": "/data", "subPath": "a/b"},
            {"name": "data", "mountPath": "/x", "subPathExpr": "$(POD)/..x"},
        ),
        True,
    ),
    Case("mount-unknown-volume", mounts({"name": "nope", "mountPath": "/data"}), False, "volumeMounts[0].name"),
    Case(
        "mount-path-duplicate",
        mounts({"name": "data", "mountPath": "/data"}, {"name": "cache", "mountPath": "/data"}),
        False,
        "volumeMounts[1].mountPath",
    ),
    Case("mount-path-empty", mounts({"name": "data", "mountPath": ""}), False, "mountPath"),
    Case("mount-sub-path-absolute", mounts({"name": "data", "mountPath": "/d", "subPath": "/etc"}), False, "subPath"),
    Case(
        "mount-sub-path-backstep", mounts({"name": "data", "mountPath": "/d", "subPath": "a/../../b"}), False, "subPath"
    ),
    Case(
        "mount-sub-path-and-expr",
        mounts({"name": "data", "mountPath": "/d", "subPath": "a", "subPathExpr": "b"}),
        False,
        "subPathExpr",
    ),
    Case(
        "mount-bidirectional-unprivileged",
        mounts({"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional"}),
        False,
        "mountPropagation",
    ),
    Case(
        "mount-bidirectional-privileged",
        mounts(
            {"name": "data", "mountPath": "/d", "mountPropagation": "Bidirectional"},
            securityContext={"privileged": True},
        ),
        True,
    ),
    Case(
        "mount-recursive-read-only",
        mounts({"name": "data", "mountPath": "/d", "readOnly": True, "recursiveReadOnly": "IfPossible"}),
        True,
    ),
    Case(
        "mount-recursive-read-only-writable",
        mounts({"name": "data", "mountPath": "/d", "recursiveReadOnly": "Enabled"}),
        False,
        "recursiveReadOnly",
    ),
    # -- probes and lifecycle
    Case("probes-on-container", probe("livenessProbe", **HTTP), True),
    Case(
        "probes-on-sidecar",
        mkpod(
            init=[
                sidecar(
                    readinessProbe={"tcpSocket": {"port": 80}},
                    startupProbe={"exec": {"command": ["true"]}},
                    lifecycle=SLEEP,
                )
            ]
        ),
        True,
    ),
    Case(
        "probe-on-init",
        mkpod(init=[ctr("init", readinessProbe={"tcpSocket": {"port": 80}})]),
        False,
        "initContainers[0].readinessProbe",
    ),
    Case("lifecycle-on-init", mkpod(init=[ctr("init", lifecycle=SLEEP)]), False, "initContainers[0].lifecycle"),
    Case("probe-two-handlers", probe(exec={"command": ["true"]}, tcpSocket={"port": 80}), False, "tcpSocket"),
    Case("probe-no-handler", probe(periodSeconds=5), False, "readinessProbe"),
    Case("probe-http-port-zero", probe(httpGet={"port": 0}), False, "httpGet.port"),
    Case(
        "probe-http-port-name",
        probe(httpGet={"port": "http", "scheme": "HTTPS", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}),
        True,
    ),
    Case("probe-http-port-name-bad", probe(httpGet={"port": "HTTP"}), False, "httpGet.port"),
    Case("probe-http-scheme-bad", probe(httpGet={"port": 80, "scheme": "FTP"}), False, "scheme"),
    Case(
        "probe-http-header-bad",
        probe(httpGet={"port": 80, "httpHeaders": [{"name": "X Probe", "value": "1"}]}),
        False,
        "httpHeaders",
    ),
    Case("probe-exec-empty", probe(exec={"command": []}), False, "exec.command"),
    Case("probe-grpc-port-bad", probe(grpc={"port": 70000}), False, "grpc.port"),
    Case("probe-negative-period", probe(tcpSocket={"port": 80}, periodSeconds=-1), False, "periodSeconds"),
    Case(
        "liveness-success-threshold",
        probe("livenessProbe", tcpSocket={"port": 80}, successThreshold=2),
        False,
        "successThreshold",
    ),
    Case("readiness-success-threshold", probe(tcpSocket={"port": 80}, successThreshold=2), True),
    Case(
        "readiness-grace-period",
        probe(tcpSocket={"port": 80}, terminationGracePeriodSeconds=5),
        False,
        "terminationGracePeriodSeconds",
    ),
    Case(
        "liveness-grace-period-zero",
        probe("livenessProbe", tcpSocket={"port": 80}, terminationGracePeriodSeconds=0),
        False,
        "terminationGracePeriodSeconds",
    ),
    Case("sleep-over-grace-period", c_with(lifecycle={"preStop": {"sleep": {"seconds": 31}}}), False, "sleep"),
    Case(
        "sleep-within-pod-grace-period",
        mkpod(ctr(lifecycle={"preStop": {"sleep": {"seconds": 60}}}), terminationGracePeriodSeconds=60),
        True,
    ),
    Case("lifecycle-no-handler", c_with(lifecycle={"postStart": {}}), False, "postStart"),
    Case("stop-signal-is-dropped", c_with(lifecycle={"stopSignal": "NOSUCHSIGNAL"}), True),  # alpha gate: dropped
    Case("stop-signal-linux", mkpod(ctr(lifecycle={"stopSignal": "SIGUSR1"}), os={"name": "linux"}), True),
    # -- restartPolicy
    Case("sidecar-restart-always", mkpod(init=[sidecar()]), True),
    Case("init-restart-never", mkpod(init=[ctr("init", restartPolicy="Never")]), True),
    Case("init-restart-bogus", mkpod(init=[ctr("init", restartPolicy="Sometimes")]), False, "restartPolicy"),
    Case(
        "container-restart-policy", mkpod(ctr("a", restartPolicy="Always"), ctr("b", restartPolicy="OnFailure")), True
    ),
    Case("container-restart-policy-bogus", c_with(restartPolicy="Maybe"), False, "restartPolicy"),
    Case(
        "restart-rules",
        c_with(
            restartPolicy="Never",
            restartPolicyRules=[{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}],
        ),
        True,
    ),
    Case(
        "restart-rules-without-policy",
        c_with(restartPolicyRules=[{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]),
        False,
        "restartPolicy",
    ),
    Case(
        "restart-rules-without-exit-codes",
        c_with(restartPolicy="Never", restartPolicyRules=[{"action": "Restart"}]),
        False,
        "exitCodes",
    ),
    # -- resizePolicy
    Case(
        "resize-policy-sidecar",
        mkpod(init=[sidecar(resizePolicy=[{"resourceName": "cpu", "restartPolicy": "RestartContainer"}])]),
        True,
    ),
    Case(
        "resize-policy-init-restart",
        mkpod(init=[ctr("init", resizePolicy=[{"resourceName": "memory", "restartPolicy": "RestartContainer"}])]),
        False,
        "resizePolicy",
    ),
    Case(
        "resize-policy-bad-resource",
        c_with(resizePolicy=[{"resourceName": "gpu", "restartPolicy": "NotRequired"}]),
        False,
        "resizePolicy",
    ),
    # -- securityContext
    Case(
        "security-context-ok",
        c_with(
            securityContext={
                "runAsUser": 65534,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/app.json"},
            }
        ),
        True,
    ),
    Case("security-context-negative-user", c_with(securityContext={"runAsUser": -1}), False, "runAsUser"),
    Case(
        "security-context-privileged-no-escalation",
        c_with(securityContext={"privileged": True, "allowPrivilegeEscalation": False}),
        False,
        "securityContext",
    ),
    Case(
        "security-context-localhost-no-profile",
        c_with(securityContext={"seccompProfile": {"type": "Localhost"}}),
        False,
        "localhostProfile",
    ),
    # -- volumes
    Case("volume-no-source-is-empty-dir", vol(), True),
    Case(
        "volume-sources",
        mkpod(
            volumes=[
                {"name": "a", "emptyDir": {"sizeLimit": "1Gi", "medium": "Memory"}},
                {
                    "name": "b",
                    "secret": {"secretName": "s", "defaultMode": 0o440, "items": [{"key": "k", "path": "x/y"}]},
                },
                {"name": "c", "configMap": {"name": "cm"}},
                {"name": "d", "hostPath": {"path": "/var/log", "type": "Directory"}},
                {"name": "e", "persistentVolumeClaim": {"claimName": "pvc"}},
                {
                    "name": "f",
                    "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
                },
            ]
        ),
        True,
    ),
    Case("volume-name-bad", mkpod(volumes=[{"name": "My_Vol", "emptyDir": {}}]), False, "volumes[0].name"),
    Case(
        "volume-names-duplicate",
        mkpod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
        False,
        "volumes[1].name",
    ),
    Case("volume-two-sources", vol(emptyDir={}, secret={"secretName": "s"}), False, "volumes[0]"),
    Case("volume-empty-dir-negative", vol(emptyDir={"sizeLimit": "-1Gi"}), False, "sizeLimit"),
    Case("volume-host-path-backstep", vol(hostPath={"path": "/var/../etc"}), False, "hostPath.path"),
    Case("volume-host-path-type-bad", vol(hostPath={"path": "/var", "type": "Folder"}), False, "hostPath.type"),
    Case("volume-secret-no-name", vol(secret={}), False, "secretName"),
    Case("volume-config-map-mode", vol(configMap={"name": "c", "defaultMode": 0o1000}), False, "defaultMode"),
    Case(
        "volume-config-map-item-absolute",
        vol(configMap={"name": "c", "items": [{"key": "k", "path": "/etc/x"}]}),
        False,
        "items[0].path",
    ),
    Case(
        "volume-config-map-item-dotdot",
        vol(configMap={"name": "c", "items": [{"key": "k", "path": "..x"}]}),
        False,
        "items[0].path",
    ),
    Case("volume-pvc-no-claim", vol(persistentVolumeClaim={"claimName": ""}), False, "claimName"),
    # -- edge cases the apiserver decides in ways that are easy to get wrong
    Case("quantity-lone-sign-and-dot", res({"cpu": "+", "memory": "."}), True),
    Case("quantity-binary-fraction", res(None, {"memory": "0.5Ki", "ephemeral-storage": "1.Ki"}), True),
    Case("quantity-exponent-wraps-int32", res({"cpu": "1e4294967296"}, {"cpu": "1"}), True),
    Case("quantity-huge-decimal", res({"memory": "9" * 30}), True),
    Case("quantity-rounds-up-to-nano", res({"cpu": "1.0000000001"}, {"cpu": "1"}), False, "requests"),
    Case("quantity-nano-equal", res({"cpu": "1.000000001"}, {"cpu": "1000000001n"}), True),
    Case(
        "quantity-ephemeral-storage-over",
        res({"ephemeral-storage": "2Gi"}, {"ephemeral-storage": "1Gi"}),
        False,
        "requests",
    ),
    Case("resource-kubernetes-io-prefixed", res(None, {"kubernetes.io/widgets": "1"}), True),
    Case("resource-extended-equal", res({"example.com/gpu": "2"}, {"example.com/gpu": "2"}), True),
    Case("resource-hugepages-1gi", res(None, {"hugepages-1Gi": "2Gi", "cpu": "1"}), True),
    Case("label-key-prefix-253", mkpod(labels={("a" * 61 + ".") * 4 + "a" * 5 + "/k": "v"}), True),
    Case("label-key-prefix-254", mkpod(labels={("a" * 61 + ".") * 4 + "a" * 6 + "/k": "v"}), False, "labels"),
    Case("label-key-non-ascii", mkpod(labels={"clé": "v"}), False, "labels"),
    Case("label-key-mixed-case-name", mkpod(labels={"example.com/MyKey": "v"}), True),
    Case("env-name-space-only", env({"name": " ", "value": "x"}), True),
    Case("env-name-tab", env({"name": "A\tB", "value": "x"}), False, "env[0].name"),
    Case("env-field-ref-spec-host", env(field_ref("spec.host")), True),
    Case("env-field-ref-labels-whole", env(field_ref("metadata.labels")), False, "fieldRef"),
    Case("env-field-ref-subscript-name", env(field_ref("metadata.name['x']")), False, "fieldRef"),
    Case(
        "env-resource-field-ref-hugepages",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.hugepages-2Mi"}}}),
        True,
    ),
    Case(
        "env-divisor-cpu-in-millis",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1000m"}}}),
        True,
    ),
    Case(
        "env-divisor-memory-decimal-1024",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1024"}}}),
        False,
        "divisor",
    ),
    Case(
        "env-divisor-memory-exponent",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1e3"}}}),
        False,
        "divisor",
    ),
    Case(
        "env-divisor-memory-1k",
        env({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1k"}}}),
        True,
    ),
    Case(
        "host-port-other-host-ip",
        mkpod(
            ctr("a", ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}]),
            ctr("b", ports=[{"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}]),
        ),
        True,
    ),
    Case(
        "host-port-conflict-within-init",
        mkpod(
            init=[ctr("i", ports=[{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 8080}])]
        ),
        False,
        "hostPort",
    ),
    Case(
        "sidecar-restart-rules",
        mkpod(
            init=[
                sidecar(restartPolicyRules=[{"action": "Restart", "exitCodes": {"operator": "NotIn", "values": [0]}}])
            ]
        ),
        True,
    ),
    Case("init-restart-on-failure", mkpod(init=[ctr("init", restartPolicy="OnFailure")]), True),
    Case(
        "restart-rules-restart-all",
        c_with(
            restartPolicy="Never",
            restartPolicyRules=[{"action": "RestartAllContainers", "exitCodes": {"operator": "In", "values": [3]}}],
        ),
        True,
    ),
    Case(
        "restart-rules-bad-operator",
        c_with(
            restartPolicy="Never",
            restartPolicyRules=[{"action": "Restart", "exitCodes": {"operator": "Equals", "values": [3]}}],
        ),
        False,
        "operator",
    ),
    Case("probe-grpc-ok", probe("livenessProbe", grpc={"port": 9000, "service": "health"}), True),
    Case("sleep-zero", c_with(lifecycle={"preStop": {"sleep": {"seconds": 0}}}), True),
    Case("volume-name-63", mkpod(volumes=[{"name": "v" * 63, "emptyDir": {}}]), True),
    Case("volume-name-64", mkpod(volumes=[{"name": "v" * 64, "emptyDir": {}}]), False, "volumes[0].name"),
    Case(
        "same-mount-path-in-two-containers",
        mkpod(
            ctr("a", volumeMounts=[{"name": "v", "mountPath": "/d"}]),
            ctr("b", volumeMounts=[{"name": "v", "mountPath": "/d"}]),
            volumes=[{"name": "v", "emptyDir": {}}],
        ),
        True,
    ),
    Case(
        "sidecar-mounts-unknown-volume",
        mkpod(init=[sidecar(volumeMounts=[{"name": "x", "mountPath": "/x"}])]),
        False,
        "initContainers[0].volumeMounts[0].name",
    ),
    # -- imagePullSecrets
    Case("image-pull-secrets", mkpod(imagePullSecrets=[{"name": "regcred"}, {"name": "Not_A_DNS_Name"}, {}]), True),
]


def _ids(cases: list[Case]) -> list[str]:
    return [c.id for c in cases]


def test_case_ids_are_unique() -> None:
    assert len(set(_ids(CASES))) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_case(case: Case) -> None:
    problems = check_pod(copy.deepcopy(case.pod))
    rendered = [format_problem(p) for p in problems]
    if case.ok:
        assert problems == [], rendered
    else:
        assert problems, f"{case.id}: expected a problem at {case.where!r}"
        assert any(case.where in format_path(path) for path, _ in problems), rendered


def test_check_pod_leaves_the_pod_alone() -> None:
    for case in CASES:
        before = copy.deepcopy(case.pod)
        check_pod(case.pod)
        assert case.pod == before, case.id


# -- messages ----------------------------------------------------------------------------------


def test_messages_are_worded_like_the_apiserver() -> None:
    problems = check_container({"name": "Sidecar_1", "image": "x"}, ("spec", "containers", 1), "container")
    assert problems == [
        (
            ("spec", "containers", 1, "name"),
            'Invalid value: "Sidecar_1": a lowercase RFC 1123 label must consist of lower case alphanumeric '
            "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    ]
    assert format_problem(problems[0]).startswith('spec.containers[1].name: Invalid value: "Sidecar_1": ')


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (
            res({"cpu": "2"}, {"cpu": "1"}),
            'spec.containers[0].resources.requests.cpu: Invalid value: "2": '
            "must be less than or equal to cpu limit of 1",
        ),
        (
            c_with(ports=[{"containerPort": 80, "protocol": "tcp"}]),
            'spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"',
        ),
        (mounts({"name": "nope", "mountPath": "/d"}), 'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
        (mkpod(ctr("a"), ctr("a")), 'spec.containers[1].name: Duplicate value: "a"'),
        (
            mkpod(init=[ctr("i", livenessProbe={"tcpSocket": {"port": 1}})]),
            "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without "
            "restartPolicy=Always",
        ),
        (mkpod(annotations={"k": "v" * BIG}), "metadata.annotations: Too long: may not be more than 262144 bytes"),
        (mkpod(labels={"app": "-x"}), 'metadata.labels.app: Invalid value: "-x": a valid label must be an empty '),
        (
            env({"name": "A=B"}),
            'spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable '
            "name must consist only of printable ASCII characters other than '='",
        ),
    ],
)
def test_message(pod: dict[str, Any], expected: str) -> None:
    rendered = [format_problem(p) for p in check_pod(pod)]
    assert any(r.startswith(expected) for r in rendered), rendered


def test_every_problem_at_once() -> None:
    pod = mkpod(
        ctr("Bad_Name", ports=[{"containerPort": 0, "name": "HTTP"}], resources={"requests": {"cpu": "x"}}),
        ctr("Bad_Name", volumeMounts=[{"name": "nope", "mountPath": "rel/../x", "subPath": "/abs"}]),
        labels={"-": "-"},
        volumes=[{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}],
    )
    paths = {format_path(p) for p, _ in check_pod(pod)}
    assert {
        "metadata.labels[-]",
        "spec.containers[0].name",
        "spec.containers[0].ports[0].name",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[0].resources.requests.cpu",
        "spec.containers[1].name",
        "spec.containers[1].volumeMounts[0].name",
        "spec.containers[1].volumeMounts[0].subPath",
        "spec.volumes[0].hostPath",
    } <= paths


# -- the granular pieces -----------------------------------------------------------------------


def test_pieces_root_their_paths_at_the_argument() -> None:
    assert check_labels({"ok": "fine"}, ("x",)) == []
    assert [p for p, _ in check_labels({"a": "-"}, ("cfg", "labels"))] == [("cfg", "labels", "a")]
    assert [p for p, _ in check_annotations({"a b": ""}, ("cfg",))] == [("cfg", "a b")]
    assert [p for p, _ in check_annotations({"k": "v" * BIG}, ("cfg",))] == [("cfg",)]
    assert [p for p, _ in check_volume({"name": "V"}, ("cfg", "volumes", 2))] == [("cfg", "volumes", 2, "name")]
    assert check_volume({"name": "v", "configMap": {"name": "c"}}, ()) == []


@pytest.mark.parametrize(
    ("c", "kind", "ok"),
    [
        (ctr(readinessProbe={"tcpSocket": {"port": 1}}), "container", True),
        (ctr(readinessProbe={"tcpSocket": {"port": 1}}), "init", False),
        (ctr(readinessProbe={"tcpSocket": {"port": 1}}), "sidecar", True),  # the injector adds restartPolicy
        (ctr(restartPolicy="Always", lifecycle=SLEEP), "init", True),
        (ctr(restartPolicy="Never"), "sidecar", False),
        (ctr(volumeMounts=[{"name": "anything", "mountPath": "/x"}]), "container", True),  # volumes unknown
    ],
)
def test_check_container_kinds(c: dict[str, Any], kind: Any, ok: bool) -> None:
    assert (check_container(c, ("c",), kind) == []) is ok


def test_mounts_are_resolved_against_the_given_volumes() -> None:
    c = ctr(volumeMounts=[{"name": "data", "mountPath": "/d"}])
    assert check_container(c, (), "container", volumes={"data"}) == []
    assert [m for _, m in check_container(c, (), "container", volumes=set())] == ['Not found: "data"']


@pytest.mark.parametrize(
    "pod",
    [
        mkpod(init=[sidecar()]),
        mkpod(init=[ctr("init", restartPolicy="Never")]),
        mkpod(ctr(restartPolicy="Always")),
    ],
)
def test_without_native_sidecars_any_restart_policy_is_refused(pod: dict[str, Any]) -> None:
    assert check_pod(pod) == []
    problems = check_pod(pod, native_sidecars=False)
    assert problems and all(p[-1] == "restartPolicy" for p, _ in problems)
    assert all("has no native sidecars" in m for _, m in problems)


def test_sidecar_kind_without_native_sidecars() -> None:
    problems = check_container(ctr(), ("s",), "sidecar", native_sidecars=False)
    assert [p for p, _ in problems] == [("s", "restartPolicy")]


# -- quantities --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", "0"),
        ("1", "1"),
        ("100m", "0.1"),
        ("1.5Gi", str(3 * 2**29)),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("1E", "1e18"),
        ("2k", "2000"),
        ("1Ki", "1024"),
        ("1Ei", str(2**60)),
        ("5n", "5e-9"),
        ("3u", "3e-6"),
        ("-1", "-1"),
        ("+2", "2"),
        ("+", "0"),
        ("-", "0"),
        (".", "0"),
        ("1.", "1"),
        (".5", "0.5"),
        ("000", "0"),
        (" 2 ", "2"),
        ("1e-3", "0.001"),
        ("1e+3", "1000"),
        ("1.0000000001", "1.000000001"),
        ("1e-12", "1e-9"),
        ("-1e-12", "-1e-9"),
        ("10Ei", str(2**63 - 1)),
        (2, "2"),
        (1.5, "1.5"),
        (1e20, "1e20"),
    ],
)
def test_quantity_parses(text: Any, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "1K",
        "1e",
        "1ee3",
        "1Ki3",
        "1m3",
        "lots",
        "1 Gi",
        "1.5.5",
        "--1",
        "1e3m",
        "0x10",
        True,
        None,
        [],
        float("inf"),
    ],
)
def test_quantity_refused(text: Any) -> None:
    assert parse_quantity(text) is None


# -- realistic pods ----------------------------------------------------------------------------


def _realistic_pods() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for pattern in (
        "examples/*/expected.yaml",
        "examples/*/input.yaml",
        "tests/golden/*/expected.pod.yaml",
        "tests/golden/*/pod.yaml",
    ):
        for path in sorted(ROOT.glob(pattern)):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "Pod":
                    found.append((str(path.relative_to(ROOT)), doc))
    return found


# Golden inputs that exercise JSON Patch escaping with keys the apiserver itself would refuse.
DELIBERATELY_INVALID = {"tests/golden/escaped-keys/pod.yaml", "tests/golden/escaped-keys/expected.pod.yaml"}
ALL_PODS = _realistic_pods()
REALISTIC = [(n, p) for n, p in ALL_PODS if n not in DELIBERATELY_INVALID]


def test_there_are_realistic_pods() -> None:
    assert len(REALISTIC) >= 10


@pytest.mark.parametrize(("name", "pod"), REALISTIC, ids=[n for n, _ in REALISTIC])
def test_realistic_pods_have_no_problems(name: str, pod: dict[str, Any]) -> None:
    assert [format_problem(p) for p in check_pod(pod)] == []


def test_the_escaping_golden_pods_would_be_refused() -> None:
    invalid = {name for name, pod in ALL_PODS if check_pod(pod)}
    assert invalid == DELIBERATELY_INVALID


def test_a_big_pod_is_checked_quickly() -> None:
    import timeit

    name, pod = max(REALISTIC, key=lambda np: len(str(np[1])))
    per_call = min(timeit.repeat(lambda: check_pod(pod), number=200, repeat=3)) / 200
    assert per_call < 0.005, f"{name}: {per_call * 1e6:.0f} µs"


# -- robustness: a pod of any shape is checked, never crashed on -------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_FIELDS = sorted(
    {
        k
        for case in CASES
        for c in case.pod["spec"]["containers"] + case.pod["spec"].get("initContainers", [])
        for k in c
    }
    | {"name", "image", "ports", "env", "envFrom", "volumeMounts", "resources", "lifecycle", "livenessProbe"}
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(CASES),
    field=st.sampled_from(_FIELDS),
    value=_json,
    spec_field=st.sampled_from(["volumes", "initContainers", "containers", "terminationGracePeriodSeconds", "os"]),
    spec_value=_json,
)
def test_any_shape_is_checked_without_crashing(
    case: Case, field: str, value: Any, spec_field: str, spec_value: Any
) -> None:
    pod = copy.deepcopy(case.pod)
    pod["spec"]["containers"][0][field] = value
    check_pod(pod)
    pod["spec"][spec_field] = spec_value
    check_pod(pod)
    pod["metadata"] = {"labels": value, "annotations": spec_value}
    check_pod(pod)
