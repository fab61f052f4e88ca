"""The fleet view's cluster side against a fake API: what ``status`` lists and reads, how it
groups and prints, and ``rollout``'s duration flag. The real apiserver: tests/e2e/test_fleet*.py."""

from __future__ import annotations

import argparse
import asyncio
import copy
from typing import Any

import pytest

from sidecar_injector.cli import rollout as rollout_cli
from sidecar_injector.cli import status as status_cli
from sidecar_injector.core.inject import inject
from sidecar_injector.core.patch import strip_empty
from sidecar_injector.kube import fleet as kube_fleet
from sidecar_injector.kube.client import ApiError

from .helpers import SIDECAR, cfg, configs, pod

CS = configs(cfg("envoy", injectByDefault=True, containers=[SIDECAR]))


def _ref(kind: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": True}


def _pod(ns: str, name: str, *, injected: bool, owner: tuple[str, str] | None = None,
         **extra: Any) -> dict[str, Any]:
    p = pod()
    out = copy.deepcopy(strip_empty(inject(p, ns, CS).pod) if injected else p)
    out["metadata"].update(name=name, namespace=ns, uid=f"uid-{name}", resourceVersion="1",
                           ownerReferences=[_ref(*owner)] if owner else [])
    out.update(extra)
    return out


class FakeApi:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.calls: list[str] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.calls.append(path)
        if path not in self.objects:
            raise ApiError(404, "not found", "NotFound")
        found: dict[str, Any] = self.objects[path]
        return found

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:  # pragma: no cover
        raise AssertionError(f"status wrote: {method} {path}")


def _cluster() -> FakeApi:
    hook = {"webhooks": [{"name": "inject.sidecar-injector.io", "namespaceSelector": {
        "matchLabels": {"sidecar-injector.io/injection": "enabled"}}}]}
    pods = [
        _pod("shop", "api-5d7-abcde", injected=True, owner=("ReplicaSet", "api-5d7")),
        _pod("shop", "late", injected=False),
        _pod("shop", "done", injected=False, status={"phase": "Succeeded"}),
        _pod("off", "quiet", injected=False),
    ]
    rs = {"metadata": {"name": "api-5d7", "namespace": "shop", "ownerReferences": [_ref("Deployment", "api")]}}
    return FakeApi({
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sidecar-injector": hook,
        "/api/v1/pods": {"items": pods, "metadata": {}},
        "/apis/apps/v1/replicasets": {"items": [rs], "metadata": {}},
        "/api/v1/namespaces": {"items": [
            {"metadata": {"name": "shop", "labels": {"sidecar-injector.io/injection": "enabled"}}},
            {"metadata": {"name": "off", "labels": {}}}], "metadata": {}},
    })


def test_scan_reads_owners_and_the_webhooks_namespace_selector_and_writes_nothing() -> None:
    api = _cluster()
    result = asyncio.run(kube_fleet.scan(api, CS, namespace=None, selector=None,  # type: ignore[arg-type]
                                         webhook_config="sidecar-injector"))
    got = {(p.namespace, p.name): (p.owner.kind, p.owner.name, p.state.state) for p in result.pods}
    assert got == {("off", "quiet"): ("Pod", "quiet", "not-selected"),
                   ("shop", "api-5d7-abcde"): ("Deployment", "api", "up-to-date"),
                   ("shop", "late"): ("Pod", "late", "missing")}
    assert result.summary["missing"] == 1 and result.summary["up-to-date"] == 1
    assert "/apis/batch/v1/jobs" not in api.calls  # no Job owns a pod: not listed
    doc = status_cli.report_json(result)
    assert doc["pods"][1] == {"namespace": "shop", "name": "api-5d7-abcde", "owner": {"kind": "Deployment",
                              "name": "api"}, "state": "up-to-date", "configs": {"envoy": "up-to-date"},
                              "detail": "as the current config gives it"}
    table = status_cli._table(result)
    assert "shop  Deployment/api  (1 pod: 1 up-to-date)" in table
    assert "  late  missing       envoy=missing  config envoy missing" in table
    assert table.rstrip().endswith("not-selected 1")


def test_scan_without_the_webhook_configuration_judges_every_namespace_selected_with_a_note() -> None:
    api = _cluster()
    del api.objects["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/sidecar-injector"]
    result = asyncio.run(kube_fleet.scan(api, CS, namespace=None, selector=None,  # type: ignore[arg-type]
                                         webhook_config="sidecar-injector"))
    assert "MutatingWebhookConfiguration sidecar-injector not found" in result.notes[0]
    assert {p.name: p.state.state for p in result.pods}["quiet"] == "missing"


def test_cluster_configs_need_the_crds() -> None:
    with pytest.raises(kube_fleet.FleetError, match=r"no configs found in the cluster .*: pass them with -c"):
        asyncio.run(kube_fleet.cluster_configs(FakeApi({})))  # type: ignore[arg-type]


def test_rollout_flags() -> None:
    assert rollout_cli._duration("90s") == 90 and rollout_cli._duration("5m") == 300
    assert rollout_cli._duration("1h30m") == 5400 and rollout_cli._duration("300") == 300
    with pytest.raises(argparse.ArgumentTypeError):
        rollout_cli._duration("soon")


def test_cluster_configs_read_the_install_configmap_first_and_objects_after_files_win() -> None:
    envoy_yaml = ("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: envoy}\n"
                  "spec:\n  injectByDefault: true\n  containers: [{name: proxy, image: 'envoy:1'}]\n")
    obj = {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "ClusterSidecarConfig",
           "metadata": {"name": "envoy", "uid": "u1", "generation": 1},
           "spec": {"containers": [{"name": "proxy", "image": "envoy:2"}]}}
    team = {"apiVersion": "sidecar-injector.io/v1alpha1", "kind": "SidecarConfig",
            "metadata": {"name": "tracer", "namespace": "shop", "uid": "u2", "generation": 1},
            "spec": {"injectByDefault": True, "containers": [{"name": "otel", "image": "otel:1"}]}}
    api = FakeApi({
        "/api/v1/namespaces/sidecar-injector/configmaps/sidecar-injector-config": {
            "data": {"envoy.yaml": envoy_yaml, "README": "not yaml: not read"}},
        "/apis/sidecar-injector.io/v1alpha1/clustersidecarconfigs": {"items": [obj], "metadata": {}},
        "/apis/sidecar-injector.io/v1alpha1/sidecarconfigs": {"items": [team], "metadata": {}},
    })
    cs, notes = asyncio.run(kube_fleet.cluster_configs(  # type: ignore[arg-type]
        api, config_map=("sidecar-injector", "sidecar-injector-config")))
    assert [c.name for c in cs.configs] == ["envoy"]
    assert cs.by_name["envoy"].source.startswith("ConfigMap sidecar-injector/sidecar-injector-config")
    assert [c.name for c in cs.for_namespace("shop").configs] == ["envoy", "tracer"]
    assert notes == ["ClusterSidecarConfig/envoy ignored: metadata.name: 'envoy' is already defined by "
                     "ConfigMap sidecar-injector/sidecar-injector-config/envoy.yaml, document 1 (files win)"]
    # No ConfigMap: the objects alone, with a note.
    del api.objects["/api/v1/namespaces/sidecar-injector/configmaps/sidecar-injector-config"]
    cs, notes = asyncio.run(kube_fleet.cluster_configs(  # type: ignore[arg-type]
        api, config_map=("sidecar-injector", "sidecar-injector-config")))
    assert cs.by_name["envoy"].source == "ClusterSidecarConfig envoy"
    assert notes == ["ConfigMap sidecar-injector/sidecar-injector-config not found: configs from the SidecarConfig "
                     "objects only"]


def test_fleet_watch_counts_per_config_and_events_only_for_pods_never_injected() -> None:
    two = configs(cfg("envoy", injectByDefault=True, containers=[SIDECAR]),
                  cfg("tracer", injectByDefault=True, containers=[{"name": "otel", "image": "otel:1"}]))
    watch = kube_fleet.FleetWatch(FakeApi({}), None, lambda: two, lambda _: None,  # type: ignore[arg-type]
                                  webhook_config="sidecar-injector")
    pods = [
        _pod("shop", "api-1", injected=True, owner=("ReplicaSet", "api-5d7")),  # envoy up to date, tracer added later
        _pod("shop", "late", injected=False),                                   # never injected: the silent miss
        _pod("off", "quiet", injected=False),
    ]
    labels = {"shop": {"on": "yes"}, "off": {}}
    from sidecar_injector.core.selector import parse_selector

    counts, missing = watch._judge(pods, labels, parse_selector({"matchLabels": {"on": "yes"}}, "s"), two)
    assert counts == {("envoy", "up-to-date"): 1, ("envoy", "missing"): 1, ("tracer", "missing"): 2,
                      ("envoy", "stale"): 0, ("envoy", "unexpected"): 0, ("tracer", "up-to-date"): 0,
                      ("tracer", "stale"): 0, ("tracer", "unexpected"): 0}
    assert [(p["metadata"]["name"], gone) for p, gone in missing] == [("late", ["envoy", "tracer"])]
    # Judged again when the namespace selection changes (cached per resourceVersion, config set, selection).
    assert watch._judge(pods, labels, None, two)[0][("tracer", "missing")] == 3
