"""Issue 12, RBAC: the shipped ``<name>-fleet-view`` ClusterRole (get/list/watch only) is enough
for ``status`` (here with the configs read from the cluster as the installed server has them, no
``-c``: one from the install's ConfigMap, one from a team's SidecarConfig object),
and ``rollout`` needs only ``<name>-fleet-rollout`` (``patch`` on the workload kinds) in addition:
with the view role alone its restart is refused and nothing changes.

The ClusterRoles are the ones ``manifests`` ships (:func:`apimanifests.fleet_roles`); the
identities are ServiceAccounts with bound tokens, as a CI job or a CronJob would run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from kubernetes.client.rest import ApiException

from sidecar_injector.config import crd
from sidecar_injector.install import apimanifests

from .test_fleet import CONFIG, FakeKubelet, cli, deployment, new_image_served, rolled_out, template_stamp, wait_until

pytestmark = pytest.mark.e2e


def _ensure_crds(client: Any) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(client)
    for body in crd.crds():
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as e:
            if e.status != 409:
                raise
    for body in crd.crds():
        wait_until("CRD established", lambda body=body: any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(body["metadata"]["name"]).status.conditions or []), 30)


def _kubeconfig(cp: Any, ns: str, sa: str, path: Path) -> Path:
    with cp.api_client() as client:
        core = kubernetes.client.CoreV1Api(client)
        core.create_namespaced_service_account(ns, {"metadata": {"name": sa}})
        token = core.create_namespaced_service_account_token(
            sa, ns, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": 3600}}).status.token
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": sa, "context": {"cluster": "e2e", "user": sa, "namespace": ns}}],
        "current-context": sa,
    }))
    return path


class _As:
    """Run the CLI with another kubeconfig (``cli`` appends the admin one; the last one wins)."""

    def __init__(self, path: Path) -> None:
        self.kubeconfig = path


TRACER = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: tracer
spec:
  injectByDefault: true
  containers:
  - name: tracer
    image: otel/opentelemetry-collector:0.110.0
"""


def _scfg(ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(TRACER)
    doc["metadata"]["namespace"] = ns
    return doc


def test_fleet_view_is_enough_for_status_and_rollout_needs_only_patch_in_addition(
    injector: Any, register_webhook: Any, api: Any, control_plane: Any, tmp_path: Path
) -> None:
    # The webhook serves both configs from a file; the cluster holds them as the install does:
    # proxy in the install's ConfigMap, tracer as a team's SidecarConfig object.
    config = tmp_path / "proxy.yaml"
    config.write_text(CONFIG.format(image="busybox:1.36") + "---\n" + TRACER)
    server = injector(config)
    hook = register_webhook(server, failure_policy="Ignore")
    ns = hook.namespace("fleet-rbac")
    apps = kubernetes.client.AppsV1Api(api)
    objects = kubernetes.client.CustomObjectsApi(api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    core = kubernetes.client.CoreV1Api(api)
    _ensure_crds(api)
    objects.create_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, "sidecarconfigs", _scfg(ns))
    name = f"e2e-{hook.hook_id}"
    core.create_namespaced_config_map(ns, {"metadata": {"name": f"{name}-config"},
                                           "data": {"proxy.yaml": CONFIG.format(image="busybox:1.36")}})

    view, roll, _ = apimanifests.fleet_roles(name, {})
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in view["rules"])
    assert [(r["resources"], r["verbs"]) for r in roll["rules"]] == [
        (["deployments", "statefulsets", "daemonsets"], ["patch"])]
    for role in (view, roll):
        rbac.create_cluster_role(role)
    auditor = _kubeconfig(control_plane, ns, "auditor", tmp_path / "auditor.kubeconfig")
    operator = _kubeconfig(control_plane, ns, "operator", tmp_path / "operator.kubeconfig")
    bindings = [(f"{name}-auditor-view", view, "auditor"), (f"{name}-operator-view", view, "operator"),
                (f"{name}-operator-rollout", roll, "operator")]
    for binding, role, sa in bindings:
        rbac.create_cluster_role_binding({
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": role["metadata"]["name"]},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})

    def run(who: Path, *args: str) -> Any:
        return cli(_As(who), *args, "--webhook-config", hook.name, "--config-map", f"{ns}/{name}-config")

    try:
        with FakeKubelet(control_plane, [ns]):
            apps.create_namespaced_deployment(ns, deployment("web"))
            wait_until("web rolled out", lambda: rolled_out(apps, ns, "web"))
            out = run(auditor, "status", "-o", "json")  # the context's namespace, configs from the cluster
            assert out.returncode == 0, out.stderr
            [web] = json.loads(out.stdout)["pods"]
            assert web["configs"] == {"proxy": "up-to-date", "tracer": "up-to-date"}, out.stdout
            everywhere = run(auditor, "status", "-A", "-o", "json")
            assert everywhere.returncode in (0, 1) and "403" not in everywhere.stderr, everywhere.stderr

            config.write_text(CONFIG.format(image="busybox:1.37") + "---\n" + TRACER)
            core.patch_namespaced_config_map(f"{name}-config", ns,
                                             {"data": {"proxy.yaml": CONFIG.format(image="busybox:1.37")}})
            wait_until("new config served", lambda: new_image_served(api, ns, "busybox:1.37"), 30)
            out = run(auditor, "status")
            assert out.returncode == 1 and "proxy=stale,tracer=up-to-date" in out.stdout, out.stdout + out.stderr

            refused = run(auditor, "rollout", "--stale", "--timeout", "20s")
            assert refused.returncode == 1
            assert "restart refused: 403" in refused.stderr, refused.stdout + refused.stderr
            assert template_stamp(apps, ns, "web") is None

            done = run(operator, "rollout", "--stale", "--timeout", "120s")
            assert done.returncode == 0, done.stdout + done.stderr
            deadline = time.monotonic() + 30
            while (out := run(auditor, "status")).returncode != 0 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert out.returncode == 0 and "proxy=up-to-date,tracer=up-to-date" in out.stdout, out.stdout + out.stderr
    finally:
        for binding, _, _ in bindings:
            rbac.delete_cluster_role_binding(binding)
        for role in (view, roll):
            rbac.delete_cluster_role(role["metadata"]["name"])
        objects.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, ns, "sidecarconfigs", "tracer")
