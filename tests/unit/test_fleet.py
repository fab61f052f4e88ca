"""The fleet view's pure core (issue 12): a running pod's state per config, owners, the rollout
plan and the rollout-status judgement."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import orjson

from sidecar_injector.core import fleet
from sidecar_injector.core.inject import inject
from sidecar_injector.core.patch import strip_empty

from .helpers import SIDECAR, cfg, configs, pod

STATUS = "sidecar-injector.io/status"


def stored(p: dict[str, Any], cs: Any, namespace: str = "ns", suffix: str = "x7k2q") -> dict[str, Any]:
    """``p`` admitted by the webhook with ``cs``, then stored and run: what the API returns
    later (generated name, server metadata, defaults, the service account volume and mount in
    every container, a node, a status)."""
    out = strip_empty(inject(p, namespace, cs).pod) if cs is not None else copy.deepcopy(p)
    out = copy.deepcopy(out)
    meta = out["metadata"]
    if "generateName" in meta:
        meta["name"] = meta["generateName"] + suffix
    meta.update(namespace=namespace, uid="u-1", resourceVersion="42", creationTimestamp="2026-12-01T00:00:00Z",
                managedFields=[{"manager": "kube-controller-manager"}])
    spec = out["spec"]
    spec.setdefault("volumes", []).append({"name": "kube-api-access-abcde", "projected": {"sources": []}})
    for c in spec["containers"] + spec.get("initContainers", []):
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("volumeMounts", []).append({"name": "kube-api-access-abcde",
                                                 "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    spec.update(nodeName="node-1", restartPolicy=spec.get("restartPolicy", "Always"), dnsPolicy="ClusterFirst")
    out["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    return out


def envoy(image: str = "envoyproxy/envoy:v1.31.0", **spec: Any) -> dict[str, Any]:
    return cfg("envoy", injectByDefault=True, containers=[{**SIDECAR, "image": image}],
               volumes=[{"name": "envoy-config", "emptyDir": {}}],
               volumeMounts=[{"name": "envoy-config", "mountPath": "/etc/envoy"}],
               env=[{"name": "PROXY", "value": "1"}], labels={"mesh": "on"}, **spec)


def test_a_pod_injected_with_the_current_configs_is_up_to_date_despite_what_the_apiserver_added() -> None:
    cs = configs(envoy(), cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    st = fleet.classify(stored(pod(), cs), "ns", cs)
    assert st.state == fleet.UP_TO_DATE, st
    assert st.by_config == {"envoy": "up-to-date", "tracer": "up-to-date"}


def test_a_changed_config_makes_the_pod_stale_naming_the_config_and_both_digests() -> None:
    old = configs(envoy(), cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    new = configs(envoy("envoyproxy/envoy:v1.31.1"),
                  cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    running = stored(pod(), old)
    before = copy.deepcopy(running)
    st = fleet.classify(running, "ns", new)
    assert running == before  # never modified
    assert st.state == fleet.STALE
    assert st.by_config == {"envoy": "stale", "tracer": "up-to-date"}
    [e] = [c for c in st.configs if c.config == "envoy"]
    assert e.old and e.new and e.old != e.new and len(e.old) == 16
    assert f"config envoy changed: the pod carries {e.old}, the current config gives {e.new}" == st.detail


def test_a_pod_created_without_its_sidecar_is_missing() -> None:
    cs = configs(envoy())
    st = fleet.classify(stored(pod(), None), "ns", cs)
    assert st.state == fleet.MISSING
    assert st.by_config == {"envoy": "missing"}
    assert "config envoy missing" in st.detail


def test_a_deleted_or_no_longer_selected_config_is_unexpected() -> None:
    cs = configs(envoy(), cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    running = stored(pod(), cs)
    st = fleet.classify(running, "ns", configs(envoy()))
    assert st.state == fleet.UNEXPECTED and st.by_config == {"envoy": "up-to-date", "tracer": "unexpected"}
    assert "config tracer no longer exists" in st.detail
    narrowed = configs(envoy(), cfg("tracer", injectByDefault=True, selector={"matchLabels": {"tier": "db"}},
                                    containers=[{"name": "otel", "image": "otel:1"}]))
    st = fleet.classify(running, "ns", narrowed)
    assert st.by_config["tracer"] == "unexpected" and "selector-mismatch" in st.detail


def test_stale_wins_over_missing_and_unexpected() -> None:
    old = configs(envoy(), cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    new = configs(envoy("envoy:2"), cfg("logs", injectByDefault=True, containers=[{"name": "fb", "image": "fb:1"}]))
    st = fleet.classify(stored(pod(), old), "ns", new)
    assert st.state == fleet.STALE
    assert st.by_config == {"envoy": "stale", "logs": "missing", "tracer": "unexpected"}


def test_opted_out_and_not_selected() -> None:
    cs = configs(envoy())
    out = stored(pod(annotations={"sidecar-injector.io/inject": "false"}), cs)
    assert fleet.classify(out, "ns", cs).state == fleet.OPTED_OUT_STATE
    labelled = stored(pod(labels={"sidecar-injector.io/inject": "false"}), cs)
    assert fleet.classify(labelled, "ns", cs).state == fleet.OPTED_OUT_STATE
    excluded = fleet.classify(stored(pod(annotations={"sidecar-injector.io/exclude": "envoy"}), cs), "ns", cs)
    assert excluded.state == fleet.OPTED_OUT_STATE and excluded.by_config == {"envoy": "opted-out"}
    st = fleet.classify(stored(pod(), None), "ns", cs, namespace_selected=False)
    assert st.state == fleet.NOT_SELECTED and "namespaceSelector" in st.detail
    optional = configs(cfg("envoy", containers=[SIDECAR]))
    st = fleet.classify(stored(pod(), None), "ns", optional)
    assert st.state == fleet.NOT_SELECTED and st.configs == ()


def test_a_pod_injected_before_per_config_digests_is_stale_old_status_format() -> None:
    cs = configs(envoy())
    running = stored(pod(), cs)
    running["metadata"]["annotations"][STATUS] = orjson.dumps({"injected": ["envoy"],
                                                               "hash": "sha256:00"}).decode()
    st = fleet.classify(running, "ns", cs)
    assert st.state == fleet.STALE and st.by_config == {"envoy": "stale"}
    assert st.detail.startswith("old status format")


def test_templates_are_rendered_for_the_pod_as_admitted_generate_name_not_the_generated_name() -> None:
    cs = configs(cfg("envoy", injectByDefault=True, containers=[
        {"name": "proxy", "image": "envoy:1", "args": ["--id", "{{ name }}.{{ namespace }}"]}]))
    running = stored(pod(), cs)
    assert running["metadata"]["name"] == "web-x7k2q"
    assert next(c for c in running["spec"]["containers"] if c["name"] == "proxy")["args"] == ["--id", "web-.ns"]
    assert fleet.classify(running, "ns", cs).state == fleet.UP_TO_DATE


def test_the_current_configs_failing_for_a_pod_is_an_error_state() -> None:
    cs = configs(cfg("envoy", injectByDefault=True, containers=[
        {"name": "proxy", "image": "envoy:{{ annotations['v'] }}"}]))
    st = fleet.classify(stored(pod(), None), "ns", cs)
    assert st.state == fleet.ERROR and "fail" in st.detail


def test_summary_counts_every_state() -> None:
    s = fleet.summary(["stale", "stale", "up-to-date"])
    assert s["stale"] == 2 and s["up-to-date"] == 1 and s["missing"] == 0
    assert list(s) == list(fleet.STATES)


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}


def test_owner_follows_replicaset_to_deployment_and_job_to_cronjob() -> None:
    rs = {"metadata": {"name": "api-5d7", "namespace": "a", "ownerReferences": [_ref("Deployment", "api")]}}
    job = {"metadata": {"name": "nightly-1", "namespace": "a", "ownerReferences": [_ref("CronJob", "nightly")]}}
    parents = {("a", "ReplicaSet", "api-5d7"): rs, ("a", "Job", "nightly-1"): job}

    def p(*refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "p", "namespace": "a", "ownerReferences": list(refs)}}

    assert fleet.owner_of(p(_ref("ReplicaSet", "api-5d7")), parents) == fleet.Owner("a", "Deployment", "api")
    assert fleet.owner_of(p(_ref("Job", "nightly-1")), parents) == fleet.Owner("a", "CronJob", "nightly")
    assert fleet.owner_of(p(_ref("StatefulSet", "db")), parents) == fleet.Owner("a", "StatefulSet", "db")
    assert fleet.owner_of(p(_ref("ReplicaSet", "orphan")), parents) == fleet.Owner("a", "ReplicaSet", "orphan")
    assert fleet.owner_of(p(), parents) == fleet.Owner("a", "Pod", "p")
    assert fleet.owner_of(p({**_ref("Deployment", "x"), "controller": False}), parents).kind == "Pod"


def test_plan_is_sorted_and_never_touches_bare_pods_jobs_or_opted_out_workloads() -> None:
    W = fleet.Owner
    owners = [W("b", "StatefulSet", "db"), W("a", "Deployment", "web"), W("a", "Deployment", "api"),
              W("a", "Pod", "lonely"), W("a", "CronJob", "nightly"), W("a", "Job", "once"),
              W("a", "DaemonSet", "agent"), W("b", "Deployment", "legacy"), W("a", "ReplicaSet", "bare-rs")]
    plan = fleet.plan_rollout(owners, [W("b", "Deployment", "legacy")])
    assert plan.restart == (W("a", "DaemonSet", "agent"), W("a", "Deployment", "api"), W("a", "Deployment", "web"),
                            W("b", "StatefulSet", "db"))
    skipped = {o.name: why for o, why in plan.skipped}
    assert set(skipped) == {"lonely", "nightly", "once", "legacy", "bare-rs"}
    assert "kubectl -n a get pod lonely -o yaml | sidecar-injector uninject -f - | kubectl replace --force -f -" \
        in skipped["lonely"]
    assert "inject=false" in skipped["legacy"]
    assert fleet.restart_patch("T") == {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "T"}}}}}


def _deploy(gen: int = 2, observed: int = 2, replicas: int = 2, updated: int = 2, total: int = 2,
            available: int = 2, conditions: list[Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"generation": gen}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                       "availableReplicas": available, "conditions": conditions or []}}


def test_rollout_status_semantics_of_kubectl() -> None:
    assert fleet.rollout_status("Deployment", _deploy()) == (True, "2 of 2 updated replicas available")
    assert not fleet.rollout_status("Deployment", _deploy(observed=1))[0]
    assert fleet.rollout_status("Deployment", _deploy(updated=1))[1] == "1 of 2 new replicas updated"
    assert fleet.rollout_status("Deployment", _deploy(total=3))[1] == "1 old replicas pending termination"
    assert fleet.rollout_status("Deployment", _deploy(available=1))[1] == "1 of 2 updated replicas available"
    failed = _deploy(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded",
                                  "message": "ReplicaSet \"x\" has timed out progressing."}])
    assert fleet.rollout_failed("Deployment", failed) == 'progress deadline exceeded: ReplicaSet "x" has timed out ' \
        'progressing.'
    sts = {"metadata": {"generation": 1}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                      "currentRevision": "a", "updateRevision": "b"}}
    assert not fleet.rollout_status("StatefulSet", sts)[0]
    sts["status"]["currentRevision"] = "b"
    assert fleet.rollout_status("StatefulSet", sts)[0]
    ds = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
                                                   "updatedNumberScheduled": 3, "numberAvailable": 2}}
    assert fleet.rollout_status("DaemonSet", ds) == (False, "2 of 3 updated pods available")


class _FakeApi:
    """Workloads that become ready after ``ready_after`` polls, or never (``bad``)."""

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad
        self.polls: dict[str, int] = {}
        self.log: list[str] = []
        self.active = 0
        self.max_active = 0

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        name = path.rsplit("/", 1)[1]
        self.polls[name] = self.polls.get(name, 0) + 1
        ready = name not in self.bad and self.polls[name] >= 2
        if ready:
            self.log.append(f"ready {name}")
            self.active -= 1
        return _deploy(available=2 if ready else 0)


def test_rollout_is_bounded_ordered_and_stops_at_the_first_failure() -> None:
    from sidecar_injector.kube.fleet import rollout

    async def go(bad: set[str], parallel: int) -> tuple[Any, _FakeApi]:
        api = _FakeApi(bad)

        async def restart(_: Any, o: fleet.Owner) -> None:
            api.log.append(f"restart {o.name}")
            api.active += 1
            api.max_active = max(api.max_active, api.active)

        plan = [fleet.Owner("a", "Deployment", n) for n in ("one", "two", "three", "four")]
        res = await rollout(api, plan, parallel=parallel, timeout=0.3, report=lambda _: None, poll=0.01,  # type: ignore[arg-type]
                            restart_fn=restart)
        return res, api

    res, api = asyncio.run(go(set(), 1))
    assert [o.name for o in res.done] == ["one", "two", "three", "four"] and api.max_active == 1
    assert api.log == ["restart one", "ready one", "restart two", "ready two", "restart three", "ready three",
                       "restart four", "ready four"]
    res, api = asyncio.run(go({"two"}, 1))
    assert [o.name for o in res.done] == ["one"]
    assert [(o.name, "not ready within 0.3s" in why) for o, why in res.failed] == [("two", True)]
    assert [o.name for o in res.not_started] == ["three", "four"]
    res, api = asyncio.run(go(set(), 2))
    assert len(res.done) == 4 and api.max_active == 2


def test_the_install_ships_the_fleet_roles_read_only_view_patch_only_rollout() -> None:
    from sidecar_injector.install import manifests

    objs = manifests.render(manifests.ManifestOptions(namespace="sidecar-injector", image="i",
                                                      config_files={"c.yaml": "x"}))
    roles = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ClusterRole"}
    view, roll, watch = (roles[f"sidecar-injector-fleet-{n}"] for n in ("view", "rollout", "metrics"))
    assert {v for r in view["rules"] for v in r["verbs"]} == {"get", "list", "watch"}
    assert {(g, res) for r in view["rules"] for g in r["apiGroups"] for res in r["resources"]} >= {
        ("", "pods"), ("", "namespaces"), ("apps", "replicasets"), ("batch", "jobs"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
        ("sidecar-injector.io", "sidecarconfigs"), ("sidecar-injector.io", "clustersidecarconfigs")}
    assert roll["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
                              "verbs": ["patch"]}]
    writes = [(r["resources"], r["verbs"]) for r in watch["rules"] if set(r["verbs"]) - {"get", "list", "watch"}]
    assert writes == [(["events"], ["create"])]
    bound = {o["roleRef"]["name"] for o in objs if o["kind"] == "ClusterRoleBinding"}
    assert not bound & {"sidecar-injector-fleet-view", "sidecar-injector-fleet-rollout",
                        "sidecar-injector-fleet-metrics"}, bound  # bound by whoever uses them
