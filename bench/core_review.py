#!/usr/bin/env python3
"""Benchmark of the core alone: time per `review()` (parse, decide, patch, encode).

Not a test: it prints figures for the README. Cases: a typical 5 KB pod and a 100 KB pod,
with 1, 10 and 100 configs loaded (one injects; the others are defaults whose selector
does not match, so every one of them is evaluated for every pod). Then the injecting config
with templates, with CEL matchConditions, and with both (which read any field of the pod, so
the review is decoded whole and the conditions see the pod converted once).

    python bench/core_review.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core.admission import review
from sidecar_injector.core.parse import parse_configs

HERE = Path(__file__).parent
SHARED_CONFIG = HERE.parent.parent / "shared" / "bench" / "config.yaml"


def make_pod(target_bytes: int) -> dict[str, Any]:
    """A realistic pod (a Deployment's: generateName, labels, env, probes) of about target_bytes."""
    def container(i: int) -> dict[str, Any]:
        return {
            "name": f"app-{i}",
            "image": f"registry.example.com/team/app-{i}:v1.2.3",
            "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
            "env": [{"name": f"SETTING_{j}", "value": f"value-{j}-" + "x" * 20} for j in range(12)],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}, "periodSeconds": 5},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        }

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d9f8b6c5d-",
            "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f8b6c5d", "team": "payments"},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8b6c5d",
                                 "uid": "6a0b8c3e-6d1f-4b7e-9a55-1f2e3d4c5b6a", "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {"containers": [container(0)], "volumes": [{"name": "data", "emptyDir": {}}],
                 "serviceAccountName": "web", "restartPolicy": "Always"},
    }
    i = 1
    while len(json.dumps(pod)) < target_bytes:
        pod["spec"]["containers"].append(container(i))
        i += 1
    return pod


def review_body(pod: dict[str, Any]) -> bytes:
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "shop", "operation": "CREATE",
                    "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "object": pod, "oldObject": None, "dryRun": False,
                    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}},
    }).encode()


TEMPLATED = {
    "labels": {"app-copy": "{{ labels['app'] | default('none') }}"},
    "containers": [{"name": "proxy", "image": "envoyproxy/envoy:{{ annotations['envoy'] | default('v1.31.0') }}",
                    "args": ["--service-node", "{{ name }}.{{ namespace }}"],
                    "ports": [{"containerPort": "{{ annotations['proxy-port'] | default('15001') }}"}]}],
}
CONDITIONS = [
    {"name": "not-host-network", "expression": "!has(object.spec.hostNetwork) || !object.spec.hostNetwork"},
    {"name": "no-istio", "expression": "!object.spec.containers.exists(c, c.name == 'istio-proxy')"},
]


def configs(n: int, variant: str = "static") -> Any:
    base = yaml.safe_load(SHARED_CONFIG.read_text()) if SHARED_CONFIG.exists() else {
        "apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "proxy"},
        "spec": {"injectByDefault": True, "labels": {"foo": "bar"},
                 "containers": [{"name": "proxy", "image": "envoyproxy/envoy:v1.31.0"}],
                 "volumes": [{"name": "envoy-config", "configMap": {"name": "envoy-config"}}]},
    }
    if variant in ("templates", "templates+cel"):
        base = {**base, "spec": {**base["spec"], **TEMPLATED}}
    if variant in ("cel", "templates+cel"):
        base = {**base, "spec": {**base["spec"], "matchConditions": CONDITIONS}}
    docs = [("bench", base)]
    for i in range(n - 1):
        docs.append((f"extra-{i}", {
            "apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
            "metadata": {"name": f"extra-{i}"},
            "spec": {"injectByDefault": True, "selector": {"matchLabels": {"extra": str(i)}},
                     "containers": [{"name": f"extra-{i}", "image": "busybox"}]},
        }))
    return parse_configs(docs, schema=pod_schema())


def measure(body: bytes, cs: Any, seconds: float) -> tuple[float, float]:
    """Median and best microseconds per review over several timed batches."""
    r = review(body, cs)
    assert r.outcome == "injected", r
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n = 200
        t = time.perf_counter()
        for _ in range(n):
            review(body, cs)
        samples.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(samples), min(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    print("| pod size | configs loaded | median µs/review | best µs/review |")
    print("|---|---|---|---|")
    for size in (5_000, 100_000):
        body = review_body(make_pod(size))
        for n in (1, 10, 100):
            med, best = measure(body, configs(n), args.seconds)
            print(f"| {len(body) / 1000:.1f} KB | {n} | {med:.1f} | {best:.1f} |", flush=True)
    print()
    print("| pod size | the injecting config has | median µs/review | best µs/review |")
    print("|---|---|---|---|")
    body = review_body(make_pod(5_000))
    for variant in ("static", "templates", "cel", "templates+cel"):
        med, best = measure(body, configs(1, variant), args.seconds)
        print(f"| {len(body) / 1000:.1f} KB | {variant} | {med:.1f} | {best:.1f} |", flush=True)


if __name__ == "__main__":
    main()
