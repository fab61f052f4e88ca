"""Issue 12, end to end: ``status`` and ``rollout`` against the real control plane.

Deployments are made by the real kube-controller-manager (ReplicaSets, pods) and injected by our
webhook under ``failurePolicy: Ignore``. There is no kubelet here, so nothing makes a pod Ready:
a small fake kubelet (:class:`FakeKubelet`) patches the ``status`` subresource of every pod in
the test's namespaces as a kubelet would (phase Running, conditions Ready and ContainersReady),
except pods labelled ``e2e.sidecar-injector.io/never-ready``, which stay pending forever. The
Deployment controller then counts them available, and ``rollout`` waits on exactly what
``kubectl rollout status`` reads.

The story: two Deployments, a StatefulSet and a Deployment opted out on its own object (its
pods injected) up-to-date → the config's image changes → ``status`` says stale, with
the config and both digests → the webhook stops, a pod created meanwhile is ``missing`` → a
namespace outside the webhook's namespaceSelector is ``not-selected`` → ``rollout --stale
--dry-run`` plans and changes nothing → ``rollout --stale`` restarts the Deployments and the
StatefulSet one at a time, each ready before the next, never the opted-out one nor the bare pod →
``status`` up-to-date → a Deployment whose new pods never
become ready stops the next rollout, the ones after it untouched.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
from kubernetes.client.rest import ApiException

from .webhooks import create_pod, list_pods, pod, read_pod

pytestmark = pytest.mark.e2e

NEVER_READY = "e2e.sidecar-injector.io/never-ready"
CONFIG = """\
apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata:
  name: proxy
spec:
  injectByDefault: true
  containers:
  - name: proxy
    image: {image}
  volumes:
  - name: proxy-shared
    emptyDir: {{}}
  volumeMounts:
  - {{name: proxy-shared, mountPath: /shared}}
"""


class FakeKubelet:
    """Marks every pod of ``namespaces`` Ready through the status subresource, as a kubelet does
    once the containers run (no kubelet here); pods labelled NEVER_READY are left pending."""

    def __init__(self, control_plane: Any, namespaces: list[str]) -> None:
        self.control_plane = control_plane
        self.namespaces = namespaces
        self.stopped = threading.Event()
        self.marked = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeKubelet:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(10)

    def _run(self) -> None:
        with self.control_plane.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            while not self.stopped.is_set():
                for ns in self.namespaces:
                    try:
                        for p in list_pods(client, ns):
                            self._mark(core, p)
                    except ApiException:
                        pass
                self.stopped.wait(0.2)

    def _mark(self, core: Any, p: dict[str, Any]) -> None:
        meta, status = p["metadata"], p.get("status") or {}
        if NEVER_READY in (meta.get("labels") or {}) or meta.get("deletionTimestamp"):
            return
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            return
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                      for t in ("Initialized", "ContainersReady", "Ready")]
        body = {"status": {"phase": "Running", "startTime": now, "conditions": conditions}}
        try:
            core.patch_namespaced_pod_status(meta["name"], meta["namespace"], body)
            self.marked += 1
        except ApiException:
            pass


def deployment(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    match = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 1, "selector": {"matchLabels": match},
            "template": {"metadata": {"labels": {**match, **(labels or {})}},
                         "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}},
        },
    }


def statefulset(name: str) -> dict[str, Any]:
    body = deployment(name)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = name
    return body


def sts_ready(apps: Any, ns: str, name: str) -> bool:
    st = apps.read_namespaced_stateful_set(name, ns).status
    return bool(st.ready_replicas == 1 and st.updated_replicas == 1 and st.current_revision == st.update_revision)


def cli(control_plane: Any, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sidecar_injector", *args, "--kubeconfig",
                           str(control_plane.kubeconfig)], capture_output=True, text=True, timeout=timeout)


def status(control_plane: Any, config: Path, hook: Any, namespace: str, *extra: str) -> tuple[int, dict[str, Any]]:
    out = cli(control_plane, "status", "-c", str(config), "-n", namespace, "-o", "json",
              "--webhook-config", hook.name, *extra)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def by_owner(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in report["pods"]:
        out.setdefault(f"{p['owner']['kind']}/{p['owner']['name']}", []).append(p)
    return out


def wait_until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def rolled_out(apps: Any, ns: str, name: str) -> bool:
    d = apps.read_namespaced_deployment(name, ns)
    st = d.status
    return bool(st.observed_generation == d.metadata.generation and st.updated_replicas == 1
                and st.replicas == 1 and st.available_replicas == 1)


def template_stamp(apps: Any, ns: str, name: str) -> str | None:
    ann = apps.read_namespaced_deployment(name, ns).spec.template.metadata.annotations or {}
    return ann.get("kubectl.kubernetes.io/restartedAt")


def new_image_served(api: Any, ns: str, image: str) -> bool:
    got = create_pod(api, ns, pod(f"canary-{time.monotonic_ns()}"), dry_run=True)
    return any(c.get("image") == image for c in got["spec"]["containers"])


def test_status_and_rollout_on_a_real_control_plane(
    injector: Any, register_webhook: Any, api: Any, control_plane: Any, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(CONFIG.format(image="busybox:1.36"))
    server = injector(config)
    hook = register_webhook(server, failure_policy="Ignore")
    ns = hook.namespace("fleet")
    off = hook.namespace("fleet-off", enabled=False)  # outside the webhook's namespaceSelector
    apps = kubernetes.client.AppsV1Api(api)
    with FakeKubelet(control_plane, [ns, off]) as kubelet:
        for name in ("web", "api"):
            apps.create_namespaced_deployment(ns, deployment(name))
        # Opted out on the workload object only (its pods are injected): rollout must not touch it.
        legacy = deployment("legacy")
        legacy["metadata"]["annotations"] = {"sidecar-injector.io/inject": "false"}
        apps.create_namespaced_deployment(ns, legacy)
        apps.create_namespaced_stateful_set(ns, statefulset("db"))
        apps.create_namespaced_deployment(off, deployment("quiet"))
        for n, name in ((ns, "web"), (ns, "api"), (ns, "legacy"), (off, "quiet")):
            wait_until(f"{n}/{name} rolled out", lambda n=n, name=name: rolled_out(apps, n, name))
        wait_until("db ready", lambda: sts_ready(apps, ns, "db"))

        # 1. Everything current.
        code, report = status(control_plane, config, hook, ns)
        assert code == 0, report
        assert report["summary"]["up-to-date"] == 4 and report["summary"]["stale"] == 0
        assert sorted(by_owner(report)) == ["Deployment/api", "Deployment/legacy", "Deployment/web", "StatefulSet/db"]
        assert all(p["configs"] == {"proxy": "up-to-date"} for p in report["pods"])
        code, report = status(control_plane, config, hook, off)
        assert code == 0 and [p["state"] for p in report["pods"]] == ["not-selected"]
        assert "namespaceSelector" in report["pods"][0]["detail"]

        # 2. A new sidecar version (the CVE fix): the running pods are stale, naming the config.
        config.write_text(CONFIG.format(image="busybox:1.37"))
        wait_until("the server serves the new config", lambda: new_image_served(api, ns, "busybox:1.37"), 30)
        code, report = status(control_plane, config, hook, ns)
        assert code == 1
        assert report["summary"]["stale"] == 4
        for p in report["pods"]:
            assert p["state"] == "stale" and p["configs"] == {"proxy": "stale"}
            assert p["detail"].startswith("config proxy changed: the pod carries "), p["detail"]
        table = cli(control_plane, "status", "-c", str(config), "-n", ns, "--webhook-config", hook.name)
        assert table.returncode == 1 and "Deployment/web  (1 pod: 1 stale)" in table.stdout, table.stdout
        assert "summary: error 0, stale 4, missing 0" in table.stdout

        # 3. The silent miss: the webhook down under failurePolicy Ignore.
        server.stop()
        stored = create_pod(api, ns, pod("while-down"))
        assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
        server.start()
        hook.wait_active(ns)
        code, report = status(control_plane, config, hook, ns)
        assert code == 1
        [missed] = by_owner(report)["Pod/while-down"]
        assert missed["state"] == "missing" and missed["configs"] == {"proxy": "missing"}
        assert report["summary"]["missing"] == 1 and report["summary"]["stale"] == 4

        # 4. The plan, changing nothing.
        stamps = {n: template_stamp(apps, ns, n) for n in ("api", "web")}
        plan = cli(control_plane, "rollout", "--stale", "--missing", "--dry-run", "-c", str(config), "-n", ns,
                   "--webhook-config", hook.name)
        assert plan.returncode == 0, plan.stderr
        assert f"1. {ns} deployment/api (1 pod(s))" in plan.stdout and f"2. {ns} deployment/web" in plan.stdout
        assert f"3. {ns} statefulset/db (1 pod(s))" in plan.stdout
        assert "skipped: " + ns + " pod/while-down" in plan.stdout and "kubectl replace --force" in plan.stdout
        assert f"skipped: {ns} deployment/legacy (1 pod(s)): the workload itself carries the inject=false" \
            in plan.stdout
        assert {n: template_stamp(apps, ns, n) for n in ("api", "web")} == stamps == {"api": None, "web": None}

        # 5. The rollout: one Deployment at a time, each ready before the next.
        t0 = time.monotonic()
        out = cli(control_plane, "rollout", "--stale", "-c", str(config), "-n", ns, "--webhook-config", hook.name,
                  "--timeout", "120s")
        took = time.monotonic() - t0
        assert out.returncode == 0, out.stdout + out.stderr
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("restarted ") or "is ready" in ln]
        assert [ln.split(" in ")[0] for ln in lines] == [
            "restarted deployment/api", "deployment/api", "restarted deployment/web", "deployment/web",
            "restarted statefulset/db", "statefulset/db"], lines
        assert all(template_stamp(apps, ns, n) for n in ("api", "web"))
        assert template_stamp(apps, ns, "legacy") is None
        db_template = apps.read_namespaced_stateful_set("db", ns).spec.template.metadata.annotations or {}
        assert "kubectl.kubernetes.io/restartedAt" in db_template
        for name in ("api", "web"):
            [p] = [p for p in list_pods(api, ns, label_selector=f"app={name}")
                   if not p["metadata"].get("deletionTimestamp")]
            assert [c["image"] for c in p["spec"]["containers"] if c["name"] == "proxy"] == ["busybox:1.37"]
        code, report = status(control_plane, config, hook, ns)
        assert report["summary"]["up-to-date"] == 3 and report["summary"]["stale"] == 1  # legacy: never touched
        assert code == 1 and report["summary"]["missing"] == 1  # the bare pod: never touched
        assert read_pod(api, ns, "while-down")["metadata"]["uid"] == stored["metadata"]["uid"]
        kubernetes.client.CoreV1Api(api).delete_namespaced_pod("while-down", ns, grace_period_seconds=0)
        wait_until("bare pod gone", lambda: not [p for p in list_pods(api, ns)
                                                 if p["metadata"]["name"] == "while-down"])
        code, report = status(control_plane, config, hook, ns, "-l", "app!=legacy")
        assert code == 0 and report["summary"]["up-to-date"] == 3, report
        print(f"\n[fleet] rollout of 2 Deployments and a StatefulSet, one at a time: {took:.1f}s; fake kubelet marked "
              f"{kubelet.marked} pods ready")

        # 6. A workload whose new pods never become ready stops the rollout there.
        apps.create_namespaced_deployment(ns, deployment("broken", {NEVER_READY: "true"}))
        wait_until("broken's pod", lambda: list_pods(api, ns, label_selector="app=broken"))
        config.write_text(CONFIG.format(image="busybox:1.38"))
        wait_until("the server serves the newer config", lambda: new_image_served(api, ns, "busybox:1.38"), 30)
        stamps = {n: template_stamp(apps, ns, n) for n in ("api", "web")}
        out = cli(control_plane, "rollout", "--stale", "-c", str(config), "-n", ns, "--webhook-config", hook.name,
                  "--timeout", "10s")
        assert out.returncode == 1, out.stdout + out.stderr
        assert (f"rollout stopped: deployment/broken in {ns} did not become ready: not ready within 10s: "
                "1 old replicas pending termination") in out.stderr, out.stderr
        assert f"not restarted: {ns} deployment/web, {ns} statefulset/db" in out.stderr
        assert template_stamp(apps, ns, "api") != stamps["api"]  # before broken: restarted
        assert template_stamp(apps, ns, "web") == stamps["web"]  # after broken: untouched
        assert template_stamp(apps, ns, "broken")
