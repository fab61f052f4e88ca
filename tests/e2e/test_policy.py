"""The compiled MutatingAdmissionPolicy gives the same stored pod as the webhook (issue 11).

For every golden case, every example and the corpus (each config file alone, every pod
template), the pod is created (a) through the webhook and (b) through the compiled policy
with no webhook registered, in namespaces of their own; the two stored pods must be equal
once the server-set fields are removed (uid, resourceVersion, creationTimestamp,
managedFields, the namespace, the generated name and the random suffix of the
ServiceAccount token volume). Cases whose config does not compile, or which the policy
declines by design (a pod declaring a sidecar's name, a pod arriving with a status
annotation), are counted and printed, never dropped silently.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from sidecar_injector.config.configload import load_configs
from sidecar_injector.policy import compile_set

from .webhooks import create_pod, pod

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
POLICY_LABEL = "e2e.sidecar-injector.io/policy"
STATUS = "sidecar-injector.io/status"
_ids = itertools.count(1)


def _templates(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    kind = doc.get("kind")
    if kind == "Pod":
        return [copy.deepcopy(doc)]
    spec = doc.get("spec") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    tpl = spec.get("template") if kind in (
        "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob") else None
    if not isinstance(tpl, dict):
        return []
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": copy.deepcopy(tpl.get("metadata") or {}),
         "spec": copy.deepcopy(tpl["spec"])}
    if kind in ("Job", "CronJob"):
        p["spec"].setdefault("restartPolicy", "OnFailure")
    return [p]


def _cases() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for case in sorted((ROOT / "tests/golden").iterdir()):
        if (case / "pod.yaml").is_file():
            out.append((f"golden/{case.name}", case / "config.yaml", yaml.safe_load((case / "pod.yaml").read_text())))
    for ex in sorted((ROOT / "examples").iterdir()):
        for i, doc in enumerate(yaml.safe_load_all((ex / "input.yaml").read_text())):
            for p in _templates(doc):
                out.append((f"example/{ex.name}/{i}", ex / "config.yaml", p))
    corpus = ROOT / "tests/e2e/corpus"
    for cfg in sorted((corpus / "configs").glob("*.yaml")):
        for man in sorted((corpus / "manifests").glob("*.yaml")):
            for i, doc in enumerate(yaml.safe_load_all(man.read_text())):
                for p in _templates(doc):
                    out.append((f"corpus/{cfg.stem}/{man.stem}/{i}", cfg, p))
    return out


def _prepare(p: dict[str, Any], n: int) -> dict[str, Any]:
    p = copy.deepcopy(p)
    meta = p.setdefault("metadata", {})
    meta.pop("namespace", None)
    meta["name"] = f"case-{n}"
    meta.pop("generateName", None)
    p["spec"].pop("serviceAccountName", None)
    p["spec"].pop("serviceAccount", None)
    p["spec"].pop("nodeName", None)  # pods bound to no node, as controllers create them
    return p


def normalize(stored: dict[str, Any], ns: str) -> dict[str, Any]:
    d = copy.deepcopy(stored)
    for k in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "namespace", "generation"):
        d["metadata"].pop(k, None)
    text = re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access-xxxxx", json.dumps(d, sort_keys=True))
    text = text.replace(ns, "NAMESPACE")  # templates may render the namespace
    out: dict[str, Any] = json.loads(text)
    out.pop("status", None)
    return out


def _create(api: Any, ns: str, body: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return normalize(create_pod(api, ns, body), ns)
    except ApiException as e:
        return f"refused {e.status}: {json.loads(e.body).get('message', '')[:200]}"


def _kubectl(control_plane: Any, *args: str, stdin: str | None = None) -> None:
    subprocess.run(["kubectl", f"--kubeconfig={control_plane.kubeconfig}", *args], input=stdin, text=True,
                   check=True, capture_output=True)


def _apply_policy(control_plane: Any, compiled: Any) -> None:
    _kubectl(control_plane, "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": compiled.objects()}))


def _delete_policy(control_plane: Any, name: str) -> None:
    _kubectl(control_plane, "delete", "--ignore-not-found", f"mutatingadmissionpolicybinding/{name}",
             f"mutatingadmissionpolicy/{name}")


def _wait_policy(control_plane: Any, api: Any, ns: str) -> None:
    """Dry-run canaries until the policy mutates one (its binding reached the admission chain)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = create_pod(api, ns, pod(f"canary-{next(_ids)}"), dry_run=True)
        if STATUS in (got["metadata"].get("annotations") or {}):
            return
        time.sleep(0.1)
    raise TimeoutError("policy not active")


def _policy_namespace(control_plane: Any, pid: str, purpose: str) -> str:
    name = f"{pid}-{purpose}"[:63]
    control_plane.create_namespace(name, {POLICY_LABEL: pid})
    return name


CANARY_CONFIG = """apiVersion: sidecar-injector.io/v1alpha1
kind: SidecarConfig
metadata: {name: e2e-canary}
spec:
  injectByDefault: true
  selector: {matchLabels: {e2e-canary: "yes"}}
"""


def test_policy_equals_webhook(control_plane: Any, api: Any, injector: Any, register_webhook: Any,
                               tmp_path: Path) -> None:
    cases = _cases()
    by_config: dict[Path, list[tuple[str, dict[str, Any]]]] = {}
    for name, cfg, p in cases:
        by_config.setdefault(cfg, []).append((name, p))
    identical: list[str] = []
    differ: list[str] = []
    webhook_only_config: list[str] = []
    declined: list[str] = []
    n = 0
    for cfg, items in by_config.items():
        configs = load_configs(cfg)
        compiled = compile_set(configs, name="e2e-eq", selector={"matchLabels": {POLICY_LABEL: "x"}})
        if compiled.unsupported:
            why = "; ".join(str(u) for u in compiled.unsupported)
            webhook_only_config += [f"{name} ({why})" for name, _ in items]
            continue
        server = injector(cfg)
        hook = register_webhook(server, mutated=None)
        ns_a = hook.namespace(f"eq{next(_ids)}")
        pid = f"pol{next(_ids)}"
        compiled = compile_set(configs, name=pid, selector={"matchLabels": {POLICY_LABEL: pid}})
        ns_b = _policy_namespace(control_plane, pid, "eq")
        _apply_policy(control_plane, compiled)
        try:
            time.sleep(2.0)  # both configurations reach the admission chain
            for name, p in items:
                n += 1
                body = _prepare(p, n)
                ann = body["metadata"].get("annotations") or {}
                names = {c.get("name") for k in ("containers", "initContainers") for c in body["spec"].get(k) or []}
                if STATUS in ann or names & set(compiled.sidecar_names):
                    declined.append(name)
                    continue
                a = _create(api, ns_a, body)
                b = _create(api, ns_b, body)
                if a == b:
                    identical.append(name)
                elif isinstance(a, dict) and isinstance(b, dict) and compiled.templated and _same_but_hash(a, b):
                    identical.append(f"{name} (status hash differs: templated config)")
                else:
                    differ.append(f"{name}:\n  webhook: {_brief(a)}\n  policy:  {_brief(b)}")
        finally:
            _delete_policy(control_plane, pid)
            hook.delete()
    report = (f"\n[policy equivalence] {len(identical)} identical, {len(differ)} different, "
              f"{len(webhook_only_config)} webhook-only (config does not compile), "
              f"{len(declined)} declined by the policy by design (pod declares a sidecar / was injected before)\n"
              + "".join(f"  identical: {x}\n" for x in identical)
              + "".join(f"  webhook-only: {x}\n" for x in webhook_only_config)
              + "".join(f"  declined: {x}\n" for x in declined)
              + "".join(f"  DIFFERENT: {x}\n" for x in differ))
    print(report)
    (Path("/tmp") / "policy-equivalence.txt").write_text(report)
    assert not differ, report
    assert identical


def _same_but_hash(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        d = copy.deepcopy(d)
        st = json.loads(d["metadata"]["annotations"][STATUS])
        st.pop("hash", None)
        st.pop("digests", None)
        d["metadata"]["annotations"][STATUS] = st
        return d
    try:
        return strip(a) == strip(b)
    except (KeyError, ValueError):
        return False


def _brief(x: Any) -> str:
    return x if isinstance(x, str) else json.dumps({"metadata": x["metadata"], "spec": {
        k: x["spec"].get(k) for k in ("initContainers", "containers", "volumes", "imagePullSecrets")}})[:3000]


def test_latency(control_plane: Any, api: Any, injector: Any, register_webhook: Any) -> None:
    """Added latency per pod creation: none, the policy, the webhook (same run, sequential and a burst)."""
    cfg = ROOT / "examples/01-seed-article/config.yaml"
    server = injector(cfg)
    hook = register_webhook(server)
    ns_hook = hook.namespace("lat")
    pid = f"pol{next(_ids)}"
    compiled = compile_set(load_configs(cfg), name=pid, selector={"matchLabels": {POLICY_LABEL: pid}})
    ns_pol = _policy_namespace(control_plane, pid, "lat")
    ns_none = _policy_namespace(control_plane, f"none{next(_ids)}", "lat")
    _apply_policy(control_plane, compiled)
    try:
        _wait_policy(control_plane, api, ns_pol)
        results: dict[str, list[float]] = {"none": [], "policy": [], "webhook": []}
        for _ in range(3):  # interleaved rounds: the same machine state for all three
            for label, ns in (("none", ns_none), ("policy", ns_pol), ("webhook", ns_hook)):
                for _ in range(20):
                    t = time.perf_counter()
                    got = create_pod(api, ns, pod(f"lat-{next(_ids)}"), dry_run=False)
                    results[label].append((time.perf_counter() - t) * 1000)
                    assert (STATUS in (got["metadata"].get("annotations") or {})) == (label != "none")
        med = {k: statistics.median(v) for k, v in results.items()}
        burst: dict[str, float] = {}
        import concurrent.futures
        for label, ns in (("none", ns_none), ("policy", ns_pol), ("webhook", ns_hook)):
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                t = time.perf_counter()
                list(pool.map(lambda i, ns=ns: create_pod(api, ns, pod(f"burst-{next(_ids)}")), range(100)))
                burst[label] = (time.perf_counter() - t) * 1000 / 100
        line = (f"\n[policy latency] sequential median ms per pod: none {med['none']:.2f}, "
                f"policy {med['policy']:.2f} (+{med['policy'] - med['none']:.2f}), "
                f"webhook {med['webhook']:.2f} (+{med['webhook'] - med['none']:.2f}); "
                f"burst of 100 (16 threads) wall ms per pod: none {burst['none']:.2f}, "
                f"policy {burst['policy']:.2f}, webhook {burst['webhook']:.2f}")
        print(line)
        (Path("/tmp") / "policy-latency.txt").write_text(line)
    finally:
        _delete_policy(control_plane, pid)
