"""Issue 10: SidecarConfig as a Kubernetes API, against a real control plane of its own (its
apiserver is restarted mid-module, which the session's shared one must not be).

Two ``serve --config-source kubernetes`` replicas watch the CRDs; the mutating webhook calls the
first, the validating webhook (``/validate-config``) too. Times from a write to the change being
in force on BOTH replicas are measured by posting reviews to each replica directly, and printed.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.rest import ApiException

from sidecar_injector.config import crd
from sidecar_injector.install import apimanifests

from . import webhooks
from .controlplane import ControlPlane, _kill_group
from .injector import InjectorServer
from .webhooks import create_pod, pod

pytestmark = pytest.mark.e2e

G, V = crd.GROUP, crd.VERSION
IN_FORCE_BUDGET = 2.0
TIMES: dict[str, float] = {}


class ApiInjector(InjectorServer):
    """``serve --config-source kubernetes --kubeconfig K`` (no --config)."""

    def __init__(self, workdir: Path, ca: tuple[bytes, bytes], kubeconfig: Path) -> None:
        super().__init__(Path("/nonexistent"), workdir, ca)
        self.kubeconfig = kubeconfig

    def command(self) -> list[str]:
        cmd = super().command()
        i = cmd.index("--config")
        cmd[i:i + 2] = ["--config-source", "kubernetes", "--kubeconfig", str(self.kubeconfig)]
        return cmd

    def review(self, namespace: str, name: str) -> dict[str, Any]:
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "probe", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": namespace,
            "operation": "CREATE", "object": pod(name)}}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            out: dict[str, Any] = json.loads(r.read())
        return out["response"]

    def images(self, namespace: str) -> list[str]:
        import base64

        resp = self.review(namespace, "probe")
        ops = json.loads(base64.b64decode(resp["patch"])) if "patch" in resp else []
        out = []
        for op in ops:
            v = op.get("value")
            for c in v if isinstance(v, list) else [v]:
                if isinstance(c, dict) and "image" in c and c.get("name") != "app":
                    out.append(c["image"])
        return sorted(out)

    def status_writes(self) -> int:
        return sum(1 for line in self.log_text().splitlines() if '"msg":"status written"' in line)


class Env:
    def __init__(self, cp: ControlPlane, client: Any, servers: list[ApiInjector], hook: webhooks.Hook) -> None:
        self.cp, self.client, self.servers, self.hook = cp, client, servers, hook
        self.objects = kubernetes.client.CustomObjectsApi(client)
        self.ns_a = hook.namespace("team-a")
        self.ns_b = hook.namespace("team-b")

    def cluster(self, name: str, image: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{G}/{V}", "kind": "ClusterSidecarConfig", "metadata": {"name": name},
                "spec": {"injectByDefault": True, "containers": [{"name": name, "image": image}], **spec}}

    def namespaced(self, ns: str, name: str, image: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{G}/{V}", "kind": "SidecarConfig", "metadata": {"name": name, "namespace": ns},
                "spec": {"injectByDefault": True, "containers": [{"name": name, "image": image}], **spec}}

    def wait_everywhere(self, what: str, namespace: str, expected: list[str], start: float,
                        timeout: float = 10.0) -> float:
        """Seconds from ``start`` until every replica injects ``expected`` images in ``namespace``."""
        pending = list(self.servers)
        while pending:
            pending = [s for s in pending if s.images(namespace) != sorted(expected)]
            if not pending:
                break
            if time.monotonic() - start > timeout:
                got = {s.port: s.images(namespace) for s in self.servers}
                raise AssertionError(f"{what}: replicas inject {got}, expected {expected}")
            time.sleep(0.01)
        took = time.monotonic() - start
        TIMES[what] = took
        print(f"\n[e2e] {what}: in force on {len(self.servers)} replicas after {took * 1000:.0f} ms")
        return took

    def stored_images(self, namespace: str, name: str) -> list[str]:
        got = create_pod(self.client, namespace, pod(name), dry_run=True)
        return sorted(c["image"] for c in got["spec"].get("containers", []) + got["spec"].get("initContainers", [])
                      if c["name"] != "app")


def _apply_crds(client: Any) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(client)
    for body in crd.crds():
        ext.create_custom_resource_definition(body)
    deadline = time.monotonic() + 30
    for body in crd.crds():
        while True:
            got = ext.read_custom_resource_definition(body["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            assert time.monotonic() < deadline, "CRDs not established"
            time.sleep(0.1)


def restart_apiserver(cp: ControlPlane) -> None:
    proc = next(p for p in cp._procs if p.name == "kube-apiserver")
    _kill_group(proc.popen)
    cp._procs.remove(proc)
    proc.log.rename(proc.log.with_suffix(".before-restart.log"))
    cp._spawn("kube-apiserver", cp._apiserver_args())
    cp._wait("kube-apiserver", cp._apiserver_ready)


@pytest.fixture(scope="module")
def env(k8s_binaries: dict[str, Path], webhook_ca: tuple[bytes, bytes],
        tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Env]:
    cp = ControlPlane(k8s_binaries).start()
    servers: list[ApiInjector] = []
    try:
        with cp.api_client() as client:
            _apply_crds(client)
            workdir = tmp_path_factory.mktemp("api-configs")
            for i in range(2):
                d = workdir / f"replica{i}"
                d.mkdir()
                servers.append(ApiInjector(d, webhook_ca, cp.kubeconfig).start())
            validating = webhooks.rewrite_to_url(
                apimanifests.validating_webhook_configuration("sidecar-injector-config", "unused", "unused", {}),
                servers[0].url.replace("/mutate", "/validate-config"), servers[0].ca_cert)
            kubernetes.client.AdmissionregistrationV1Api(client).create_validating_webhook_configuration(validating)
            hook = webhooks.register(cp, servers[0].url, servers[0].ca_cert, mutated=None)
            yield Env(cp, client, servers, hook)
    finally:
        failed = request.session.testsfailed > 0
        for s in servers:
            if failed:
                print(f"\n[e2e] server log {s.log}:\n" + "\n".join(s.log_text().splitlines()[-30:]))
            s.stop()
        cp.stop(keep_logs=failed)
        if TIMES:
            print("\n[e2e] SidecarConfig API, write -> in force on both replicas: "
                  + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in TIMES.items()))


def _expect_refused(call: Callable[[], Any], *fragments: str) -> str:
    with pytest.raises(ApiException) as info:
        call()
    body = str(info.value.body)
    for f in fragments:
        assert f in body, body
    return body


def test_apply_cluster_config_injects_new_pods_within_2s(env: Env) -> None:
    start = time.monotonic()
    env.objects.create_cluster_custom_object(G, V, "clustersidecarconfigs", env.cluster("envoy", "envoy:v1"))
    assert env.wait_everywhere("create", env.ns_a, ["envoy:v1"], start) < IN_FORCE_BUDGET
    assert env.stored_images(env.ns_a, "after-create") == ["envoy:v1"]


def test_edit_reaches_new_pods(env: Env) -> None:
    start = time.monotonic()
    env.objects.patch_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy",
                                            {"spec": {"containers": [{"name": "envoy", "image": "envoy:v2"}]}})
    assert env.wait_everywhere("edit", env.ns_a, ["envoy:v2"], start) < IN_FORCE_BUDGET
    assert env.stored_images(env.ns_b, "after-edit") == ["envoy:v2"]


def test_invalid_objects_are_refused_at_create_with_the_field_named(env: Env) -> None:
    bad = env.cluster("broken", "x:1")
    bad["spec"]["containers"][0]["name"] = "Bad_Name"
    body = _expect_refused(lambda: env.objects.create_cluster_custom_object(G, V, "clustersidecarconfigs", bad),
                           "spec.containers[0].name", "Bad_Name", "ClusterSidecarConfig broken is invalid")
    assert "document" not in body  # file-free
    cel = env.cluster("badcel", "x:1", matchConditions=[{"name": "c", "expression": "object.spec.("}])
    _expect_refused(lambda: env.objects.create_cluster_custom_object(G, V, "clustersidecarconfigs", cel),
                    "spec.matchConditions[0].expression")
    # Unknown fields: refused by the apiserver itself under strict field validation (the CRD schema).
    typo = env.cluster("typo", "x:1")
    typo["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(ApiException) as info:
        env.objects.create_cluster_custom_object(G, V, "clustersidecarconfigs", typo, field_validation="Strict")
    assert "imagePullPolicyy" in str(info.value.body)


def test_tenant_config_stays_in_its_namespace(env: Env) -> None:
    start = time.monotonic()
    env.objects.create_namespaced_custom_object(G, V, env.ns_a, "sidecarconfigs",
                                                env.namespaced(env.ns_a, "tracer", "tracer:1"))
    env.wait_everywhere("namespaced create", env.ns_a, ["envoy:v2", "tracer:1"], start)
    assert env.stored_images(env.ns_a, "tenant-a") == ["envoy:v2", "tracer:1"]
    assert env.stored_images(env.ns_b, "tenant-b") == ["envoy:v2"]
    for s in env.servers:
        assert s.images(env.ns_b) == ["envoy:v2"]
    escape = env.namespaced(env.ns_a, "escape", "evil:1", namespaces=[env.ns_b])
    _expect_refused(lambda: env.objects.create_namespaced_custom_object(G, V, env.ns_a, "sidecarconfigs", escape),
                    "spec.namespaces", "own namespace")


def test_namespaced_config_shadows_the_cluster_config_of_the_same_name(env: Env) -> None:
    start = time.monotonic()
    env.objects.create_namespaced_custom_object(G, V, env.ns_a, "sidecarconfigs",
                                                env.namespaced(env.ns_a, "envoy", "envoy:team-a"))
    env.wait_everywhere("shadow", env.ns_a, ["envoy:team-a", "tracer:1"], start)
    assert env.stored_images(env.ns_a, "shadow-a") == ["envoy:team-a", "tracer:1"]
    assert env.stored_images(env.ns_b, "shadow-b") == ["envoy:v2"]


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _wait_status(get: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool],
                 timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        obj = get()
        if check(obj):
            return obj
        assert time.monotonic() < deadline, f"status not as expected: {obj.get('status')}"
        time.sleep(0.1)


def test_status_conditions_and_a_single_writer(env: Env) -> None:
    def ready(obj: dict[str, Any]) -> bool:
        c = _conditions(obj)
        return (c.get("Ready", {}).get("status") == "True" and c.get("Accepted", {}).get("status") == "True"
                and obj["status"].get("observedGeneration") == obj["metadata"]["generation"])

    envoy = _wait_status(lambda: env.objects.get_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy"), ready)
    assert envoy["metadata"]["generation"] == 2 and _conditions(envoy)["Ready"]["reason"] == "InForce"
    _wait_status(lambda: env.objects.get_namespaced_custom_object(G, V, env.ns_a, "sidecarconfigs", "tracer"), ready)
    writes = [s.status_writes() for s in env.servers]
    assert sorted(writes)[0] == 0 and sorted(writes)[1] > 0, writes  # exactly one replica writes


def kubectl(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(env.cp.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_get_and_explain(env: Env) -> None:
    got = kubectl(env, "get", "sidecarconfigs", "-A")
    assert got.returncode == 0, got.stderr
    header, *rows = got.stdout.splitlines()
    assert header.split()[:4] == ["NAMESPACE", "NAME", "DEFAULT", "READY"], header
    assert any(r.split()[:4] == [env.ns_a, "tracer", "true", "True"] for r in rows), got.stdout
    explained = kubectl(env, "explain", "sidecarconfig.spec.containers")
    assert explained.returncode == 0 and "imagePullPolicy" in explained.stdout, explained.stderr
    assert kubectl(env, "get", "sidecar-injector", "-A").returncode == 0  # the category


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_shipped_rbac_tenants_and_server(env: Env) -> None:
    rbac = kubernetes.client.RbacAuthorizationV1Api(env.client)
    for role in apimanifests.aggregated_roles("sidecar-injector", {}):
        rbac.create_cluster_role(role)
    for obj in apimanifests.server_rbac("sidecar-injector", "default", "sidecar-injector", {}):
        if obj["kind"] == "ClusterRole":
            rbac.create_cluster_role(obj)
        elif obj["kind"] == "ClusterRoleBinding":
            rbac.create_cluster_role_binding(obj)
        elif obj["kind"] == "Role":
            rbac.create_namespaced_role("default", obj)
        else:
            rbac.create_namespaced_role_binding("default", obj)
    rbac.create_namespaced_role_binding(env.ns_a, {
        "metadata": {"name": "alice-edit"}, "subjects": [{"kind": "User", "name": "alice"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}})

    def can(user: str, *args: str) -> bool:
        return kubectl(env, "auth", "can-i", *args, "--as", user).returncode == 0

    deadline = time.monotonic() + 30  # the aggregation controller fills `edit`
    while not can("alice", "create", "sidecarconfigs.sidecar-injector.io", "-n", env.ns_a):
        assert time.monotonic() < deadline, "edit did not aggregate SidecarConfig"
        time.sleep(0.2)
    assert not can("alice", "create", "sidecarconfigs.sidecar-injector.io", "-n", env.ns_b)
    assert not can("alice", "create", "clustersidecarconfigs.sidecar-injector.io")
    sa = "system:serviceaccount:default:sidecar-injector"
    assert can(sa, "watch", "clustersidecarconfigs.sidecar-injector.io")
    assert can(sa, "list", "sidecarconfigs.sidecar-injector.io", "-A")
    assert can(sa, "patch", "sidecarconfigs.sidecar-injector.io", "--subresource", "status", "-n", env.ns_a)
    assert not can(sa, "patch", "sidecarconfigs.sidecar-injector.io", "-n", env.ns_a)
    assert not can(sa, "create", "clustersidecarconfigs.sidecar-injector.io")
    assert can(sa, "update", "leases.coordination.k8s.io/sidecar-injector-status", "-n", "default")
    assert not can(sa, "update", "leases.coordination.k8s.io/other", "-n", "default")


def test_an_invalid_generation_that_bypassed_the_webhook_keeps_the_last_good_one(env: Env) -> None:
    adm = kubernetes.client.AdmissionregistrationV1Api(env.client)
    saved = adm.read_validating_webhook_configuration("sidecar-injector-config")
    adm.delete_validating_webhook_configuration("sidecar-injector-config")
    try:
        deadline = time.monotonic() + 20
        while True:  # until the apiserver's admission chain has dropped the webhook
            try:
                env.objects.patch_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy",
                                                        {"spec": {"labels": {"team": "a b"}}})
                break
            except ApiException:
                assert time.monotonic() < deadline
                time.sleep(0.2)

        def rejected(obj: dict[str, Any]) -> bool:
            c = _conditions(obj)
            return (c.get("Accepted", {}).get("reason") == "Invalid"
                    and c.get("Ready", {}).get("reason") == "PreviousGenerationInForce")

        obj = _wait_status(lambda: env.objects.get_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy"),
                           rejected)
        assert "spec.labels.team" in _conditions(obj)["Accepted"]["message"]
        assert env.stored_images(env.ns_b, "last-good") == ["envoy:v2"]
        env.objects.patch_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy",
                                                {"spec": {"labels": None}})
    finally:
        saved.metadata.resource_version = None
        adm.create_validating_webhook_configuration(saved)


def test_delete_stops_injection(env: Env) -> None:
    start = time.monotonic()
    env.objects.delete_cluster_custom_object(G, V, "clustersidecarconfigs", "envoy")
    env.wait_everywhere("delete", env.ns_b, [], start)
    assert env.stored_images(env.ns_b, "after-delete") == []


def test_watch_resumes_after_an_apiserver_restart(env: Env) -> None:
    restart_apiserver(env.cp)
    start = time.monotonic()
    deadline = start + 30
    while True:
        try:
            env.objects.create_cluster_custom_object(G, V, "clustersidecarconfigs",
                                                     env.cluster("after-restart", "after:1"))
            break
        except (ApiException, OSError, Exception):  # the validating webhook or the apiserver warming up
            assert time.monotonic() < deadline
            time.sleep(0.2)
    took = env.wait_everywhere("after apiserver restart", env.ns_b, ["after:1"], start, timeout=40)
    assert all(s.running for s in env.servers)
    del took
