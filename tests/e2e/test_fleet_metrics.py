"""Issue 12, ``serve --fleet-metrics`` on the real control plane: ``sidecar_injector_pods{config,
state}`` follows the fleet (up-to-date, then missing for a pod the Deployment controller made
while the webhook was down under ``failurePolicy: Ignore``, then stale after a config change),
and the Deployment gets a Warning Event ``SidecarMissing`` that ``kubectl describe`` shows.

Two servers on the same config file: A is the registered webhook (stopped to make the silent
miss), B runs ``--fleet-metrics`` only (never registered): the metric must not depend on the
webhook that failed. B runs as a ServiceAccount holding only the shipped
``<name>-fleet-metrics`` ClusterRole.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from sidecar_injector.install import apimanifests

from .injector import InjectorServer
from .test_fleet import CONFIG, deployment, list_pods, new_image_served, wait_until
from .test_fleet_rbac import _kubeconfig

pytestmark = pytest.mark.e2e


class FleetServer(InjectorServer):
    def __init__(self, *args: Any, extra: list[str]) -> None:
        super().__init__(*args)
        self.extra = extra

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


def gauge(server: InjectorServer, config: str, state: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf'^sidecar_injector_pods\{{config="{config}",state="{state}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_fleet_metrics_and_missing_sidecar_events(
    injector: Any, register_webhook: Any, api: Any, control_plane: Any, tmp_path: Path,
    webhook_ca: tuple[bytes, bytes]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(CONFIG.format(image="busybox:1.36"))
    hook_name = "sidecar-injector-fleet-metrics-e2e"
    webhook = injector(config)
    hook = register_webhook(webhook, name=hook_name, failure_policy="Ignore")
    ns = hook.namespace("fleet-metrics")
    # B runs as a ServiceAccount with only the shipped <name>-fleet-metrics ClusterRole.
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    [role] = [r for r in apimanifests.fleet_roles(f"e2e-{hook.hook_id}", {}) if r["metadata"]["name"].endswith(
        "-fleet-metrics")]
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding({
        "metadata": {"name": role["metadata"]["name"]},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "watcher", "namespace": ns}]})
    as_watcher = _kubeconfig(control_plane, ns, "watcher", tmp_path / "watcher.kubeconfig")
    (tmp_path / "b").mkdir()
    watcher = FleetServer(config, tmp_path / "b", webhook_ca,
                          extra=["--fleet-metrics", hook_name, "--kubeconfig", str(as_watcher)])
    try:
        watcher.start()
        apps = kubernetes.client.AppsV1Api(api)
        apps.create_namespaced_deployment(ns, deployment("web"))
        wait_until("web's pod", lambda: list_pods(api, ns, label_selector="app=web"))
        wait_until("gauge up-to-date 1", lambda: gauge(watcher, "proxy", "up-to-date") == 1, 30)
        assert gauge(watcher, "proxy", "missing") == 0 and gauge(watcher, "proxy", "stale") == 0

        webhook.stop()
        apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 2}})
        wait_until("a second pod", lambda: len(list_pods(api, ns, label_selector="app=web")) == 2)
        wait_until("gauge missing 1", lambda: gauge(watcher, "proxy", "missing") == 1, 30)
        core = kubernetes.client.CoreV1Api(api)

        def warning() -> Any:
            evs = core.list_namespaced_event(ns, field_selector="involvedObject.name=web").items
            return [e for e in evs if e.reason == "SidecarMissing"]

        [event] = wait_until("SidecarMissing event on the Deployment", warning, 30)
        assert event.type == "Warning" and event.involved_object.kind == "Deployment"
        assert event.involved_object.uid == apps.read_namespaced_deployment("web", ns).metadata.uid
        assert "without the sidecar config(s) proxy" in event.message and "rollout --missing" in event.message
        if shutil.which("kubectl"):
            described = subprocess.run(["kubectl", "--kubeconfig", str(control_plane.kubeconfig), "-n", ns,
                                        "describe", "deployment", "web"], capture_output=True, text=True, timeout=60)
            assert "SidecarMissing" in described.stdout, described.stdout

        webhook.start()
        hook.wait_active(ns)
        config.write_text(CONFIG.format(image="busybox:1.37"))
        wait_until("new config served", lambda: new_image_served(api, ns, "busybox:1.37"), 30)
        wait_until("gauge stale 1", lambda: gauge(watcher, "proxy", "stale") == 1, 30)
        assert gauge(watcher, "proxy", "missing") == 1 and gauge(watcher, "proxy", "up-to-date") == 0
        # One event per pod, not one per pass.
        assert len(warning()) == 1
        log = watcher.log_text()
        assert "pod missing its sidecars" in log
        assert "forbidden" not in log.lower(), log[-2000:]
    finally:
        watcher.stop()
        rbac.delete_cluster_role_binding(role["metadata"]["name"])
        rbac.delete_cluster_role(role["metadata"]["name"])
