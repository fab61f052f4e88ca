"""Test 1: the seed article's walk-through, against the real apiserver and controller manager.

Register the webhook, create the article's ``test`` Deployment (label ``component=test``) in an
enabled namespace, and look at the Pod the ReplicaSet controller made: it must carry
``component=test``, ``foo=bar`` and the sidecar, as stored by the apiserver.
"""

from __future__ import annotations

import json
import time
from typing import Any

import kubernetes.client
import pytest

from . import binaries
from .webhooks import STATUS_ANNOTATION, list_pods

pytestmark = pytest.mark.e2e


def test_control_plane_runs_the_pinned_release(control_plane: Any, api: Any) -> None:
    version = kubernetes.client.VersionApi(api).get_code()
    assert version.git_version == binaries.KUBERNETES_VERSION
    # The ServiceAccount admission plugin is on, so the controller manager must have made the
    # `default` ServiceAccount: a namespace without it could not hold pods.
    control_plane.wait_for_service_account("kube-system")


def article_deployment() -> dict[str, Any]:
    """The article's test Deployment: name `test`, label `component=test`."""
    labels = {"component": "test"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "test", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "test", "image": "nginx:1.27"}]},
            },
        },
    }


def wait_for_pods(api: Any, namespace: str, selector: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Pods appear when the deployment and replicaset controllers have done their work."""
    deadline = time.monotonic() + timeout
    while True:
        pods = list_pods(api, namespace, label_selector=selector)
        if len(pods) >= count:
            return pods
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} pod(s) {selector} in {namespace} not created in {timeout:.0f}s")
        time.sleep(0.2)


@pytest.mark.parametrize("config", ["article.yaml", "native.yaml"])
def test_article_deployment_gets_label_and_sidecar(config: str, injector: Any, register_webhook: Any, api: Any) -> None:
    server = injector(config)
    hook = register_webhook(server)
    ns = hook.namespace("walkthrough")

    kubernetes.client.AppsV1Api(api).create_namespaced_deployment(ns, article_deployment())
    [pod] = wait_for_pods(api, ns, "component=test", 1)

    meta, spec = pod["metadata"], pod["spec"]
    # Made by the ReplicaSet controller: no name at admission, only generateName.
    assert meta["generateName"].startswith("test-")
    assert meta["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert meta["labels"]["component"] == "test"
    assert meta["labels"]["foo"] == "bar"
    assert json.loads(meta["annotations"][STATUS_ANNOTATION])["injected"] == [
        "hello-native" if config == "native.yaml" else "hello-sidecar"
    ]
    assert {"name": "hello-shared", "emptyDir": {}} in spec["volumes"]
    app = next(c for c in spec["containers"] if c["name"] == "test")
    assert {"name": "hello-shared", "mountPath": "/shared"} in app["volumeMounts"]

    if config == "native.yaml":
        # A native sidecar: an init container the apiserver kept restartPolicy: Always on (a
        # misspelt field would have been dropped silently, and the startupProbe then refused).
        assert [c["name"] for c in spec["containers"]] == ["test"]
        [sidecar] = spec["initContainers"]
        assert sidecar["name"] == "hello-native"
        assert sidecar["restartPolicy"] == "Always"
        assert sidecar["startupProbe"]["exec"]["command"] == ["test", "-f", "/shared/ready"]
    else:
        assert [c["name"] for c in spec["containers"]] == ["test", "hello-sidecar"]
        assert "initContainers" not in spec
