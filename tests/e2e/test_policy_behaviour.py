"""The compiled policy in the admission chain (issue 11): next to foreign mutators, when its CEL
fails at runtime, and under a server-side dry run.

(a) A foreign MutatingAdmissionPolicy (adds a label, ``reinvocationPolicy: IfNeeded``) and a
    foreign mutating webhook (appends a container) on the same pods: the apiserver reinvokes our
    policy after they changed the pod; every sidecar is there exactly once.
(b) A config whose ``matchConditions`` fails at runtime for a pod (a label read without ``has()``)
    follows the policy's ``failurePolicy``: ``Fail`` (the compiler's default) refuses the pod and
    the message names the policy; ``Ignore`` creates the pod unchanged.
(c) ``dry_run="All"`` (``kubectl create --dry-run=server``) shows the injected pod, made by the
    policy alone: no webhook is registered for the namespace, the audit log records no webhook
    call, and nothing is stored.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from sidecar_injector.config.configload import load_configs
from sidecar_injector.policy import compile_set

from .appender import CONTAINER, AppenderWebhook
from .injector import issue_serving_cert
from .test_policy import (
    POLICY_LABEL,
    STATUS,
    _apply_policy,
    _delete_policy,
    _ids,
    _kubectl,
    _policy_namespace,
    _wait_policy,
    normalize,
)
from .webhooks import create_pod, pod, read_pod, webhook_configuration

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTICLE = Path(__file__).parent / "data" / "article.yaml"


def _compiled(cfg: Path, pid: str, **kw: Any) -> Any:
    return compile_set(load_configs(cfg), name=pid, selector={"matchLabels": {POLICY_LABEL: pid}}, **kw)


def _foreign_policy(pid: str) -> list[dict[str, Any]]:
    """Someone else's mutating policy on the same pods: adds a label (ApplyConfiguration)."""
    api = "admissionregistration.k8s.io/v1"
    name = f"zz-foreign-{pid}"
    return [
        {"apiVersion": api, "kind": "MutatingAdmissionPolicy", "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail", "reinvocationPolicy": "IfNeeded",
                  "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                          "operations": ["CREATE"], "resources": ["pods"]}]},
                  "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {
                      "expression": "Object{metadata: Object.metadata{labels: {'foreign': 'yes'}}}"}}]}},
        {"apiVersion": api, "kind": "MutatingAdmissionPolicyBinding", "metadata": {"name": name},
         "spec": {"policyName": name, "matchResources": {"namespaceSelector": {"matchLabels": {POLICY_LABEL: pid}}}}},
    ]


def test_foreign_policy_and_webhook_keep_each_sidecar_once(control_plane: Any, api: Any, webhook_ca: Any,
                                                           tmp_path: Path) -> None:
    pid = f"pol{next(_ids)}"
    compiled = _compiled(ARTICLE, pid)
    ns = _policy_namespace(control_plane, pid, "foreign")
    _apply_policy(control_plane, compiled)
    foreign = _foreign_policy(pid)
    _kubectl(control_plane, "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": foreign}))
    cert, key = issue_serving_cert(*webhook_ca)
    (tmp_path / "appender.crt").write_bytes(cert)
    (tmp_path / "appender.key").write_bytes(key)
    hook_name = f"zz-appender-{pid}"
    try:
        with AppenderWebhook(tmp_path / "appender.crt", tmp_path / "appender.key") as appender:
            hook = webhook_configuration(hook_name, appender.url, webhook_ca[0], hook_id="unused",
                                         reinvocation_policy="Never")
            # Route the foreign webhook by this test's policy label only.
            hook["webhooks"][0]["namespaceSelector"] = {"matchLabels": {POLICY_LABEL: pid}}
            _kubectl(control_plane, "create", "-f", "-", stdin=json.dumps(hook))

            def ready(p: dict[str, Any]) -> bool:
                return (STATUS in (p["metadata"].get("annotations") or {})
                        and (p["metadata"].get("labels") or {}).get("foreign") == "yes"
                        and CONTAINER["name"] in [c["name"] for c in p["spec"]["containers"]])
            _wait_until(api, ns, ready)
            for automount in (False, True):  # with the token volume, the ServiceAccount plugin mutates too
                name = f"foreign-{automount!s:.1}".lower()
                body = pod(name)
                body["spec"]["automountServiceAccountToken"] = automount
                create_pod(api, ns, body)
                stored = read_pod(api, ns, name)
                names = [c["name"] for c in stored["spec"]["containers"]]
                assert sorted(names) == sorted(["app", "hello-sidecar", CONTAINER["name"]]), names
                assert names[:2] == ["app", "hello-sidecar"]
                assert [v["name"] for v in stored["spec"]["volumes"]].count("hello-shared") == 1
                assert stored["metadata"]["labels"] == {"foo": "bar", "foreign": "yes"}
                mounts = [m["name"] for m in stored["spec"]["containers"][0]["volumeMounts"]]
                assert mounts.count("hello-shared") == 1
                st = json.loads(stored["metadata"]["annotations"][STATUS])
                assert st["injected"] == ["hello-sidecar"]
                # The foreign webhook was called on a pod that may or may not carry the sidecar yet:
                # policies run before webhooks, so it did.
                [shown] = [p for p in appender.seen if p["metadata"].get("name") == name]
                assert "hello-sidecar" in [c["name"] for c in shown["spec"]["containers"]]
    finally:
        _kubectl(control_plane, "delete", "--ignore-not-found", f"mutatingwebhookconfiguration/{hook_name}",
                 f"mutatingadmissionpolicybinding/{foreign[1]['metadata']['name']}",
                 f"mutatingadmissionpolicy/{foreign[0]['metadata']['name']}")
        _delete_policy(control_plane, pid)


def _wait_until(api: Any, ns: str, ok: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = create_pod(api, ns, pod(f"canary-{next(_ids)}"), dry_run=True)
            if ok(last):
                return
        except ApiException as e:
            last = e.body
        time.sleep(0.1)
    raise TimeoutError(f"admission chain not ready: {str(last)[:500]}")


FAILING = textwrap.dedent("""\
    apiVersion: sidecar-injector.io/v1alpha1
    kind: SidecarConfig
    metadata: {name: tiered}
    spec:
      injectByDefault: true
      # Reads a label without has(): an evaluation error for a pod without labels.
      matchConditions:
      - {name: web-tier, expression: "object.metadata.labels['tier'] == 'web'"}
      containers:
      - {name: tier-proxy, image: registry.k8s.io/pause:3.10}
    """)


def test_runtime_cel_error_follows_failure_policy(control_plane: Any, api: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "tiered.yaml"
    cfg.write_text(FAILING)
    assert compile_set(load_configs(cfg)).policy["spec"]["failurePolicy"] == "Fail"  # type: ignore[index]
    made = {}
    try:
        for fp in ("Fail", "Ignore"):
            pid = f"pol{next(_ids)}"
            ns = _policy_namespace(control_plane, pid, fp.lower())
            _apply_policy(control_plane, _compiled(cfg, pid, failure_policy=fp))
            made[fp] = (pid, ns)
            # Active once a pod the condition evaluates cleanly for gets the sidecar.
            deadline = time.monotonic() + 30
            while True:
                got = create_pod(api, ns, pod(f"canary-{next(_ids)}", labels={"tier": "web"}), dry_run=True)
                if "tier-proxy" in [c["name"] for c in got["spec"]["containers"]]:
                    break
                assert time.monotonic() < deadline, "policy not active"
                time.sleep(0.1)
        pid, ns = made["Fail"]
        with pytest.raises(ApiException) as refused:
            create_pod(api, ns, pod("unlabelled"))
        message = json.loads(refused.value.body)["message"]
        assert refused.value.status in (400, 403, 422, 500), refused.value.status
        assert f"policy '{pid}'" in message and "fails to evaluate: no such key" in message, message
        print(f"\n[policy failurePolicy Fail] {refused.value.status}: {message}")
        pid, ns = made["Ignore"]
        stored = create_pod(api, ns, pod("unlabelled"))
        assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
        assert STATUS not in (stored["metadata"].get("annotations") or {})
        # The pods the condition is true for are still injected under both.
        for fp in ("Fail", "Ignore"):
            got = create_pod(api, made[fp][1], pod("web", labels={"tier": "web"}))
            assert [c["name"] for c in got["spec"]["containers"]] == ["app", "tier-proxy"]
    finally:
        for pid, _ in made.values():
            _delete_policy(control_plane, pid)


def test_server_side_dry_run_shows_the_policy_injection(control_plane: Any, api: Any) -> None:
    pid = f"pol{next(_ids)}"
    ns = _policy_namespace(control_plane, pid, "dryrun")
    _apply_policy(control_plane, _compiled(ARTICLE, pid))
    try:
        _wait_policy(control_plane, api, ns)
        # No webhook configuration routes to this namespace: none selects the policy label.
        hooks = json.loads(_kubectl_out(control_plane, "get", "mutatingwebhookconfigurations", "-o", "json"))
        for h in hooks["items"]:
            for w in h["webhooks"]:
                assert POLICY_LABEL not in json.dumps(w.get("namespaceSelector") or {}), h["metadata"]["name"]
        dry = create_pod(api, ns, pod("dry"), dry_run=True)
        with pytest.raises(ApiException) as missing:
            read_pod(api, ns, "dry")
        assert missing.value.status == 404  # a dry run stores nothing
        assert [c["name"] for c in dry["spec"]["containers"]] == ["app", "hello-sidecar"]
        assert json.loads(dry["metadata"]["annotations"][STATUS])["injected"] == ["hello-sidecar"]
        audit = control_plane.audit_annotations(ns, "dry")
        assert not [k for k in audit if k.startswith("mutation.webhook.admission.k8s.io/")], audit
        # The dry run shows exactly what a real creation stores (server-set fields aside).
        real = create_pod(api, ns, pod("dry"))
        assert normalize(dry, ns) == normalize(real, ns)
    finally:
        _delete_policy(control_plane, pid)


def _kubectl_out(control_plane: Any, *args: str) -> str:
    return subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", *args], text=True,
                          check=True, capture_output=True).stdout


# -- manifests --mode policy | hybrid ----------------------------------------------------------

HYBRID = Path(__file__).parent / "data" / "hybrid.yaml"


def _manifests(*args: str) -> subprocess.CompletedProcess[str]:
    import sys
    return subprocess.run([sys.executable, "-m", "sidecar_injector", "manifests", "--image", "reg.example/si:1",
                           *args], capture_output=True, text=True, check=True)


def test_mode_policy_install_passes_a_server_side_dry_run(control_plane: Any) -> None:
    out = _manifests("--mode", "policy", "-c", str(ROOT / "tests/golden/two-configs-order/config.yaml"))
    done = subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", "apply", "--dry-run=server",
                           "-f", "-"], input=out.stdout, text=True, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "mutatingadmissionpolicy.admissionregistration.k8s.io/sidecar-injector created (server dry run)",
        "mutatingadmissionpolicybinding.admissionregistration.k8s.io/sidecar-injector created (server dry run)"]
    assert not done.stderr, done.stderr  # no warnings either


def _strip_hash(d: Any) -> Any:
    d = json.loads(json.dumps(d))
    st = json.loads(d["metadata"]["annotations"][STATUS])
    d["metadata"]["annotations"][STATUS] = {k: v for k, v in st.items() if k != "hash"}
    return d


def test_hybrid_gives_the_webhook_only_pod(control_plane: Any, api: Any, injector: Any, register_webhook: Any,
                                           tmp_path: Path) -> None:
    """The same pods through the webhook alone (every config) and through the hybrid install (the
    policy delivers hello-sidecar, the webhook, holding only node-agent, the rest): equal but for
    the status hash (the webhook chains the policy's) ."""
    from sidecar_injector.cli.manifests import webhook_files
    from sidecar_injector.policy import delivery_plan

    configs = load_configs(HYBRID)
    plan = delivery_plan(configs)
    assert (plan.policy, plan.webhook) == (("hello-sidecar",), ("node-agent",))
    whole = register_webhook(injector(HYBRID))
    ns_a = whole.namespace("whole")
    (tmp_path / "webhook-part").mkdir()
    for key, text in webhook_files({HYBRID.name: HYBRID.read_text()}, set(plan.webhook)).items():
        (tmp_path / "webhook-part" / key).write_text(text)
    part = register_webhook(injector(tmp_path / "webhook-part"))
    pid = f"pol{next(_ids)}"
    compiled = compile_set(configs, name=pid, only=set(plan.policy),
                           selector={"matchLabels": {"e2e.sidecar-injector.io/hook": part.hook_id}})
    ns_b = part.namespace("hybrid")
    _apply_policy(control_plane, compiled)
    try:
        _wait_until(api, ns_b, lambda p: json.loads((p["metadata"].get("annotations") or {}).get(STATUS, "{}"))
                    .get("injected") == ["hello-sidecar", "node-agent"])
        bodies = [pod("plain"), pod("labelled", labels={"foo": "mine"}),
                  pod("excluded", annotations={"sidecar-injector.io/exclude": "hello-sidecar"}),
                  pod("opted-out", labels={"sidecar-injector.io/inject": "false"})]
        for body in bodies:
            a = normalize(create_pod(api, ns_a, body), ns_a)
            b = normalize(create_pod(api, ns_b, body), ns_b)
            if STATUS in a["metadata"].get("annotations", {}):
                assert _strip_hash(a) == _strip_hash(b), (body["metadata"]["name"], a, b)
            else:
                assert a == b
        stored = read_pod(api, ns_b, "plain")
        assert [c["name"] for c in stored["spec"]["containers"]] == ["app", "hello-sidecar", "node-agent"]
        audit = control_plane.audit_annotations(ns_b, "plain")
        print(f"\n[hybrid] audit of the hybrid creation: {sorted(audit)}")
    finally:
        _delete_policy(control_plane, pid)
