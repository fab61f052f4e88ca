"""How long ``status`` (and ``serve --fleet-metrics``) takes to judge one running pod.

2000 stored pods injected with two configs (a sidecar with a volume, mount, env and label; a
plain sidecar), judged against the same configs (up-to-date) and after one changed (stale): best
of 3 runs. Not a test: nothing asserts on time. ``python bench/fleet_classify.py``
"""

from __future__ import annotations

import copy
import time
from typing import Any

from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core import fleet
from sidecar_injector.core.inject import inject
from sidecar_injector.core.parse import parse_configs
from sidecar_injector.core.patch import strip_empty


def configs(image: str) -> Any:
    docs = [
        {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "envoy"},
         "spec": {"injectByDefault": True, "labels": {"mesh": "on"},
                  "containers": [{"name": "proxy", "image": image}],
                  "volumes": [{"name": "envoy-config", "emptyDir": {}}],
                  "volumeMounts": [{"name": "envoy-config", "mountPath": "/etc/envoy"}],
                  "env": [{"name": "PROXY", "value": "1"}]}},
        {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig", "metadata": {"name": "tracer"},
         "spec": {"injectByDefault": True, "containers": [{"name": "otel", "image": "otel:1"}]}},
    ]
    return parse_configs([(f"bench, document {i}", d) for i, d in enumerate(docs)], schema=pod_schema())


def stored(i: int, cs: Any) -> dict[str, Any]:
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-5d7f9c6b8-", "labels": {"app": "web"}},
         "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    out = copy.deepcopy(strip_empty(inject(p, "shop", cs).pod))
    out["metadata"].update(name=f"web-5d7f9c6b8-{i:05d}", namespace="shop", uid=f"u{i}", resourceVersion="1")
    sa = {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    out["spec"]["volumes"].append({"name": "kube-api-access-x", "projected": {"sources": []}})
    for c in out["spec"]["containers"]:
        c.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
        c.setdefault("volumeMounts", []).append(dict(sa))
    out["spec"]["nodeName"] = "node-1"
    out["status"] = {"phase": "Running"}
    return out


def main() -> None:
    old, new = configs("envoy:1"), configs("envoy:2")
    pods = [stored(i, old) for i in range(2000)]
    for cs, label in ((old, "up-to-date"), (new, "stale")):
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            states = [fleet.classify(p, "shop", cs) for p in pods]
            best = min(best, time.perf_counter() - t)
        assert {s.state for s in states} == {label}
        print(f"{label:<11} {best / len(pods) * 1e6:6.0f} us/pod  ({len(pods)} pods in {best:.2f} s)")


if __name__ == "__main__":
    main()
