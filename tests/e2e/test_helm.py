"""The Helm chart installed into the real control plane (kube-apiserver v1.37.2), as users run it.

``kubectl create namespace`` then ``helm install --no-hooks --take-ownership`` (Helm >= 3.17: the
chart renders the Namespace with its Pod Security labels, as ``manifests`` does, and adopts the
existing one): every object of ``helm template`` is created, the webhook
configurations are registered, the Deployment's pods are admitted (Pod Security ``restricted``,
the ``system-cluster-critical`` priority; no kubelet runs them), and the certificate Job exists
without any hook. ``helm uninstall`` removes the webhook registration and leaves the CRDs and the
Namespace (``helm.sh/resource-policy: keep``). ``helm`` is built from the Go module proxy
(tests/e2e/tools.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import tools
from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sidecar-injector"
RELEASE, NAME, NS = "si-helm", "helm-injector", "si-helm"

_RESOURCES = {
    "CustomResourceDefinition": "customresourcedefinitions", "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
    "RoleBinding": "rolebindings", "ConfigMap": "configmaps", "Secret": "secrets", "Service": "services",
    "Deployment": "deployments", "PodDisruptionBudget": "poddisruptionbudgets", "NetworkPolicy": "networkpolicies",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations", "Job": "jobs", "CronJob": "cronjobs",
}


@pytest.fixture(scope="module")
def helm() -> Path:
    return Path(tools.for_tests("helm"))


def _run(cmd: list[str], cp: ControlPlane, timeout: float = 180) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={"KUBECONFIG": str(cp.kubeconfig), "HOME": "/tmp", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, f"{' '.join(cmd[:3])} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _kubectl_get(cp: ControlPlane, resource: str, name: str, namespace: str | None) -> dict[str, Any] | None:
    import shutil

    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed for the install tests"
    cmd = [kubectl, "--kubeconfig", str(cp.kubeconfig), "get", resource, name, "-o", "json"]
    if namespace:
        cmd += ["-n", namespace]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_helm_install_creates_every_object_and_registers_the_webhook(control_plane: ControlPlane, helm: Path) -> None:
    values = ["--set", f"name={NAME}", "--set", "image=registry.example/sidecar-injector:0.1.0"]
    rendered = [d for d in yaml.safe_load_all(_run([str(helm), "template", RELEASE, str(CHART), "-n", NS, *values],
                                                   control_plane)) if d]
    assert len(rendered) >= 25
    try:
        # The namespace exists first (as it usually does: `kubectl create namespace`, or a platform's
        # own); Helm checks for conflicts before --create-namespace runs, so that flag cannot be used
        # with a chart that renders its Namespace: --take-ownership adopts the existing one instead.
        subprocess.run(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), "create", "namespace", NS],
                       capture_output=True, text=True, timeout=60, check=True)
        _run([str(helm), "install", RELEASE, str(CHART), "-n", NS, "--take-ownership",
              "--no-hooks", "--wait=false", *values], control_plane)
        for obj in rendered:
            kind, meta = obj["kind"], obj["metadata"]
            got = _kubectl_get(control_plane, _RESOURCES[kind], meta["name"], meta.get("namespace"))
            assert got is not None, f"{kind} {meta['name']} was not created"
            assert got["metadata"].get("annotations", {}).get("meta.helm.sh/release-name") == RELEASE, (kind, meta)
        ns = _kubectl_get(control_plane, "namespaces", NS, None)
        assert ns is not None and ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        mwc = _kubectl_get(control_plane, "mutatingwebhookconfigurations", NAME, None)
        assert mwc is not None
        [hook] = mwc["webhooks"]
        assert hook["name"] == "inject.sidecar-injector.io" and hook["clientConfig"]["service"]["namespace"] == NS
        assert _kubectl_get(control_plane, "jobs", f"{NAME}-certs", NS) is not None  # no hook needed
        # The controller makes the Deployment's pods: admitted under restricted, with the priority.
        deadline = time.monotonic() + 60
        while True:
            listed = subprocess.run(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), "-n", NS, "get", "pods",
                                     "-l", "app.kubernetes.io/component=webhook", "-o", "json"],
                                    capture_output=True, text=True, timeout=60)
            pods = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
            if len(pods) >= 2:
                break
            assert time.monotonic() < deadline, f"the Deployment's pods were not created: {listed.stderr}"
            time.sleep(0.5)
        for pod in pods:
            assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
            assert pod["spec"]["priority"] == 2000000000
        status = json.loads(_run([str(helm), "status", RELEASE, "-n", NS, "-o", "json"], control_plane))
        assert status["info"]["status"] == "deployed"
    finally:
        subprocess.run([str(helm), "uninstall", RELEASE, "-n", NS, "--wait=false"], capture_output=True, text=True,
                       timeout=180, env={"KUBECONFIG": str(control_plane.kubeconfig), "HOME": "/tmp"})
    deadline = time.monotonic() + 30
    while _kubectl_get(control_plane, "mutatingwebhookconfigurations", NAME, None) is not None:
        assert time.monotonic() < deadline, "helm uninstall left the webhook registered"
        time.sleep(0.5)
    assert _kubectl_get(control_plane, "customresourcedefinitions", "sidecarconfigs.sidecar-injector.io", None)
    assert _kubectl_get(control_plane, "namespaces", NS, None) is not None
    # Leave the shared control plane as the other tests expect it: CRDs kept by Helm (no
    # last-applied annotation) would make test_install's `kubectl apply` warn.
    kubectl = [str(shutil.which("kubectl")), "--kubeconfig", str(control_plane.kubeconfig)]
    subprocess.run([*kubectl, "delete", "customresourcedefinitions", "sidecarconfigs.sidecar-injector.io",
                    "clustersidecarconfigs.sidecar-injector.io", "--ignore-not-found"],
                   capture_output=True, text=True, timeout=120, check=True)
    subprocess.run([*kubectl, "delete", "namespace", NS, "--wait=false", "--ignore-not-found"],
                   capture_output=True, text=True, timeout=60, check=True)
