"""Test 2: a pod with no labels, annotations, volumes or init containers gets everything injected
(each patch must create the absent array or map whole), and the apiserver stores exactly what
``sidecar-injector inject`` predicts offline, once what the apiserver itself adds is removed.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DATA
from .webhooks import create_pod, pod, read_pod

pytestmark = pytest.mark.e2e

SA_TOKEN_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

# Fields the apiserver fills in (defaulting, the ServiceAccount and DefaultTolerationSeconds
# admission plugins, the registry). They are removed from the stored pod only where the
# prediction does not have them, so a value the webhook set is still compared.
APISERVER_ADDED = {
    # metadata, set by the registry
    "uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "namespace",
    # pod spec defaults and admission plugins
    "dnsPolicy", "restartPolicy", "schedulerName", "securityContext", "terminationGracePeriodSeconds",
    "enableServiceLinks", "preemptionPolicy", "priority", "serviceAccountName", "serviceAccount",
    "tolerations",
    # container defaults
    "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "resources",
    # ports, volumes, probes, fieldRefs
    "protocol", "defaultMode", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold",
    "apiVersion",
    # status, all of it
    "status",
}  # fmt: skip


def strip_service_account_token(stored: dict[str, Any]) -> None:
    """Remove the projected token volume and its mounts, which the ServiceAccount plugin adds."""
    spec = stored["spec"]
    spec["volumes"] = [v for v in spec.get("volumes", []) if not v["name"].startswith("kube-api-access-")]
    if not spec["volumes"]:
        del spec["volumes"]
    for key in ("containers", "initContainers"):
        for c in spec.get(key, []):
            mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] != SA_TOKEN_MOUNT]
            c["volumeMounts"] = mounts
            if not mounts:
                del c["volumeMounts"]


def strip_added(stored: Any, predicted: Any) -> Any:
    """``stored`` without the APISERVER_ADDED keys that ``predicted`` lacks, recursively."""
    if isinstance(stored, dict) and isinstance(predicted, dict):
        return {
            k: strip_added(v, predicted.get(k)) for k, v in stored.items() if k in predicted or k not in APISERVER_ADDED
        }
    if isinstance(stored, list) and isinstance(predicted, list) and len(stored) == len(predicted):
        return [strip_added(s, p) for s, p in zip(stored, predicted, strict=True)]
    return stored


def predict(pod_doc: dict[str, Any], config: Path, namespace: str, tmp_path: Path) -> dict[str, Any]:
    """What ``sidecar-injector inject`` says this pod becomes, run as a user would run it."""
    pod_file = tmp_path / "pod.yaml"
    pod_file.write_text(yaml.safe_dump(pod_doc))
    out = subprocess.run(
        [sys.executable, "-m", "sidecar_injector", "inject", "-f", str(pod_file),
         "--config", str(config), "--namespace", namespace],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = yaml.safe_load(out.stdout)
    return doc


def yaml_diff(a: Any, b: Any) -> str:
    return "\n".join(
        difflib.unified_diff(
            yaml.safe_dump(a).splitlines(), yaml.safe_dump(b).splitlines(), "predicted", "stored", lineterm=""
        )
    )


@pytest.mark.parametrize(
    "automount_token",
    [
        # No token: the pod reaches the webhook with no volumes at all (the absent-array case).
        False,
        # The default: the ServiceAccount plugin, which runs before webhooks, has already added the
        # token volume and mounts, so the webhook appends to arrays that exist.
        True,
    ],
    ids=["no-volumes", "with-token-volume"],
)
def test_bare_pod_matches_offline_prediction(
    automount_token: bool, injector: Any, register_webhook: Any, api: Any, tmp_path: Path
) -> None:
    server = injector("full.yaml")
    hook = register_webhook(server)
    ns = hook.namespace("bare")
    bare = pod("bare")
    if not automount_token:
        bare["spec"]["automountServiceAccountToken"] = False

    create_pod(api, ns, bare)
    stored = read_pod(api, ns, "bare")
    predicted = predict(bare, DATA / "full.yaml", ns, tmp_path)

    # Everything was absent and is now there, created by the patch.
    meta, spec = stored["metadata"], stored["spec"]
    assert meta["labels"]["foo"] == "bar" and meta["labels"]["example.com/injected-by"] == "sidecar-injector"
    assert meta["annotations"]["example.com/proxy-config"] == '{"level": "debug"}'
    assert [c["name"] for c in spec["initContainers"]] == ["setup"]
    assert [c["name"] for c in spec["containers"]] == ["app", "proxy"]
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    # Templates rendered with the pod and the request's namespace.
    assert spec["containers"][1]["args"] == ["--pod", "bare", "--namespace", ns]

    if automount_token:
        assert any(v["name"].startswith("kube-api-access-") for v in spec["volumes"])
    strip_service_account_token(stored)
    comparable = strip_added(stored, predicted)
    assert comparable == predicted, "stored pod differs from the offline prediction:\n" + yaml_diff(
        predicted, comparable
    )
