"""The fleet view, cluster side: read the pods, their owners and namespaces, the webhook's
``namespaceSelector`` and the configs; classify with :mod:`sidecar_injector.core.fleet`; and
watch the fleet for ``serve --fleet-metrics`` (counts per config and state, Events on workloads).
Restarting workloads the way ``kubectl rollout restart`` does, one bounded group at a time, is
in :mod:`sidecar_injector.kube.rollout`; its names are re-exported here.

Reading needs only ``get``/``list`` (pods, namespaces, replicasets, jobs, the workload kinds,
mutatingwebhookconfigurations, both SidecarConfig kinds); :func:`rollout` needs ``patch`` on
Deployments, StatefulSets and DaemonSets in addition.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidecar_injector.config import apiconfig, configload
from sidecar_injector.config.crd import API_VERSION, CLUSTER_KIND, NAMESPACED_KIND, PLURALS
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION, pod_schema
from sidecar_injector.core import fleet
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import ConfigError, InjectorError
from sidecar_injector.core.selector import LabelSelector, parse_selector
from sidecar_injector.kube.client import Api, ApiError
from sidecar_injector.kube.rollout import (
    WORKLOAD_PATHS,
    RolloutResult,
    restart,
    rollout,
    wait_ready,
    workload_opted_out,
)

__all__ = [
    "FleetError",
    "FleetWatch",
    "PodReport",
    "RolloutResult",
    "Scan",
    "cluster_configs",
    "restart",
    "rollout",
    "scan",
    "wait_ready",
    "workload_opted_out",
]

_PAGE = "500"


class FleetError(InjectorError):
    """The cluster could not be read (permissions, no configs, unreachable)."""


async def list_all(api: Api, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every item of a list, page by page."""
    items: list[dict[str, Any]] = []
    query = {"limit": _PAGE, **(params or {})}
    while True:
        body = await api.get(path, query)
        items.extend(i for i in body.get("items") or [] if isinstance(i, dict))
        cont = (body.get("metadata") or {}).get("continue")
        if not cont:
            return items
        query = {**query, "continue": cont}


def _scoped(group_path: str, resource: str, namespace: str | None) -> str:
    return f"{group_path}/namespaces/{namespace}/{resource}" if namespace else f"{group_path}/{resource}"


async def _config_map_entries(api: Api, config_map: tuple[str, str], schema: Any) -> tuple[list[Any], list[str]]:
    """The entries of the install's ConfigMap (read as the server reads its mounted directory:
    the ``*.yaml``/``*.yml`` keys sorted by name), and notes. Absent or unreadable: none, a note."""
    ns, name = config_map
    try:
        cm = await api.get(f"/api/v1/namespaces/{ns}/configmaps/{name}")
    except ApiError as e:
        if e.code in (403, 404):
            return [], [f"ConfigMap {ns}/{name} {'not found' if e.code == 404 else 'not readable'}: "
                        "configs from the SidecarConfig objects only"]
        raise FleetError(f"cannot read ConfigMap {ns}/{name}: {e}") from None
    data = {k: v for k, v in (cm.get("data") or {}).items() if isinstance(v, str)}
    with tempfile.TemporaryDirectory(prefix="sidecar-injector-status-") as d:
        for key, text in data.items():
            if "/" not in key and not key.startswith("."):
                (Path(d) / key).write_text(text, encoding="utf-8")
        try:
            docs = configload.read_documents(d)
            entries = [apiconfig.parse_object(doc, src.replace(d, f"ConfigMap {ns}/{name}"), schema=schema)
                       for src, doc in docs if doc is not None]
        except ConfigError as e:
            return [], [f"ConfigMap {ns}/{name} ignored: {str(e).replace(d, '')[:500]}"]
    return entries, []


async def cluster_configs(api: Api, prefix: str = DEFAULT_PREFIX, kube_version: str = DEFAULT_KUBE_VERSION,
                          config_map: tuple[str, str] | None = None) -> tuple[ConfigSet, list[str]]:
    """The configs the installed server has in force, as it builds them (``--config-source
    both``): the install's ConfigMap (``config_map``: namespace, name) first, then the cluster's
    ClusterSidecarConfig and SidecarConfig objects; and a note per thing left out."""
    schema = pod_schema(kube_version)
    entries: list[Any] = []
    notes: list[str] = []
    if config_map is not None:
        entries, notes = await _config_map_entries(api, config_map, schema)
    objects: list[dict[str, Any]] = []
    for kind in (CLUSTER_KIND, NAMESPACED_KIND):
        try:
            got = await list_all(api, f"/apis/{API_VERSION}/{PLURALS[kind]}")
        except ApiError as e:
            if e.code == 404:
                notes.append("the cluster has no SidecarConfig API (CRDs not installed)")
                break
            raise FleetError(f"cannot list {PLURALS[kind]}: {e}") from None
        got.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), (o.get("metadata") or {})["name"]))
        objects += got
    for obj in objects:
        meta = obj.get("metadata") or {}
        entry, problems = apiconfig.check_object(obj, schema=schema)
        if entry is None:
            notes.append(f"{apiconfig.describe(str(obj.get('kind')), str(meta.get('name')), meta.get('namespace'))} "
                         f"is invalid and ignored: {'; '.join(problems)[:300]}")
            continue
        entries.append(entry)
    if not entries:
        raise FleetError("no configs found in the cluster (" + "; ".join(notes) + "): pass them with -c")
    configs, dups = apiconfig.build_set(entries, prefix, schema.native_sidecars)
    notes += [f"{k} ignored: {v}" for k, v in dups.items()]
    return configs, notes


@dataclass(frozen=True, slots=True)
class PodReport:
    namespace: str
    name: str
    owner: fleet.Owner
    state: fleet.PodState

    def as_json(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name,
                "owner": {"kind": self.owner.kind, "name": self.owner.name},
                "state": self.state.state, "configs": self.state.by_config, "detail": self.state.detail}


@dataclass
class Scan:
    pods: list[PodReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    opted_out_workloads: set[fleet.Owner] = field(default_factory=set)

    @property
    def summary(self) -> dict[str, int]:
        return fleet.summary(p.state.state for p in self.pods)


async def webhook_selector(api: Api, name: str) -> tuple[LabelSelector | None, bool, str]:
    """(namespaceSelector of the injection webhook, found, note). A selector that does not
    parse, or a configuration that is not found, selects every namespace (with a note)."""
    try:
        body = await api.get(f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{name}")
    except ApiError as e:
        if e.code in (403, 404):
            what = "not found" if e.code == 404 else "not readable"
            return None, False, (f"MutatingWebhookConfiguration {name} {what}: every namespace is judged as "
                                 "selected (--webhook-config NAME to name it)")
        raise
    hooks = [h for h in body.get("webhooks") or [] if isinstance(h, dict)]
    if not hooks:
        return None, True, f"MutatingWebhookConfiguration {name} has no webhooks"
    try:
        return parse_selector(hooks[0].get("namespaceSelector"), "namespaceSelector"), True, ""
    except ConfigError as e:
        return None, True, f"MutatingWebhookConfiguration {name}: {e}; every namespace judged as selected"


async def scan(api: Api, configs: ConfigSet, *, namespace: str | None, selector: str | None,
               webhook_config: str) -> Scan:
    """Classify every pod in scope (``namespace`` None: all). Read-only."""
    out = Scan()
    ns_selector, _, note = await webhook_selector(api, webhook_config)
    if note:
        out.notes.append(note)
    params = {"labelSelector": selector} if selector else {}
    pods = await list_all(api, _scoped("/api/v1", "pods", namespace), params)
    # Owners one level up: ReplicaSets (-> Deployment) and Jobs (-> CronJob), listed once.
    parents: dict[tuple[str, str, str], dict[str, Any]] = {}
    need = {ref[0] for p in pods if (ref := fleet.controller_of(p)) is not None}
    for kind, group, resource in (("ReplicaSet", "/apis/apps/v1", "replicasets"), ("Job", "/apis/batch/v1", "jobs")):
        if kind not in need:
            continue
        for obj in await list_all(api, _scoped(group, resource, namespace)):
            m = obj.get("metadata") or {}
            parents[(str(m.get("namespace")), kind, str(m.get("name")))] = obj
    ns_labels: dict[str, dict[str, str]] = {}
    if ns_selector is not None:
        if namespace:
            ns_obj = await api.get(f"/api/v1/namespaces/{namespace}")
            ns_labels[namespace] = (ns_obj.get("metadata") or {}).get("labels") or {}
        else:
            for ns_obj in await list_all(api, "/api/v1/namespaces"):
                m = ns_obj.get("metadata") or {}
                ns_labels[str(m.get("name"))] = m.get("labels") or {}
    for p in pods:
        m = p.get("metadata") or {}
        if m.get("deletionTimestamp") or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue  # going away, or finished: nothing runs with these sidecars
        ns, name = str(m.get("namespace") or ""), str(m.get("name") or "")
        selected = ns_selector is None or ns_selector.matches(ns_labels.get(ns, {}))
        state = fleet.classify(p, ns, configs, namespace_selected=selected,
                               selection_note=f"namespace {ns} is not selected by the webhook's namespaceSelector "
                                              f"({ns_selector.describe() if ns_selector else ''}): never injected")
        out.pods.append(PodReport(ns, name, fleet.owner_of(p, parents), state))
    out.pods.sort(key=lambda r: (r.namespace, r.owner.kind, r.owner.name, r.name))
    return out


# ---- serve --fleet-metrics: the fleet as metrics, and Events on workloads ---------------------

#: States exported by ``sidecar_injector_pods{config,state}``.
METRIC_STATES = (fleet.UP_TO_DATE, fleet.STALE, fleet.MISSING, fleet.UNEXPECTED)
EVENT_REASON = "SidecarMissing"


class FleetWatch:
    """Watches every pod and namespace, classifies each pod against the configs in force (cached
    per pod resourceVersion and config set), hands ``publish`` the count per (config, state), and
    records a Warning Event on the owning workload of each pod the webhook never injected (no
    status annotation) that the configs in force would inject (once per pod: the Event's name is
    derived from the pod's uid, so replicas and restarts do not repeat it while it lives).
    Judgements run in a worker thread: the webhook's loop never waits."""

    def __init__(self, api: Api, log: Any, configs: Callable[[], ConfigSet],
                 publish: Callable[[dict[tuple[str, str], int]], None], *, webhook_config: str,
                 identity: str = "sidecar-injector", min_interval: float = 1.0, resync: float = 30.0,
                 events: bool = True, max_events_per_pass: int = 20) -> None:
        from sidecar_injector.kube.watch import Reflector

        self.api = api
        self.log = log
        self.configs = configs
        self.publish = publish
        self.webhook_config = webhook_config
        self.identity = identity
        self.min_interval = min_interval
        self.resync = resync
        self.events = events
        self.max_events_per_pass = max_events_per_pass
        self._dirty = asyncio.Event()
        self.pods = Reflector(api, "/api/v1/pods", self._dirty.set, log)
        self.namespaces = Reflector(api, "/api/v1/namespaces", self._dirty.set, log)
        self._cache: dict[str, tuple[str, int, bool, fleet.PodState]] = {}
        self._evented: set[str] = set()
        self.passes = 0
        self.events_written = 0

    def _judge(self, pods: list[dict[str, Any]], labels: dict[str, dict[str, str]],
               selector: LabelSelector | None, configs: ConfigSet) -> tuple[dict[tuple[str, str], int],
                                                                              list[tuple[dict[str, Any], list[str]]]]:
        counts: dict[tuple[str, str], int] = {}
        known = set(configs.by_name) | {n for s in configs.scoped.values() for n in s.by_name}
        missing: list[tuple[dict[str, Any], list[str]]] = []
        cache: dict[str, tuple[str, int, bool, fleet.PodState]] = {}
        for p in pods:
            m = p.get("metadata") or {}
            if m.get("deletionTimestamp") or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            ns = str(m.get("namespace") or "")
            selected = selector is None or selector.matches(labels.get(ns, {}))
            uid, rv = str(m.get("uid")), str(m.get("resourceVersion"))
            hit = self._cache.get(uid)
            if hit is not None and hit[0] == rv and hit[1] == id(configs) and hit[2] == selected:
                state = hit[3]
            else:
                state = fleet.classify(p, ns, configs, namespace_selected=selected)
            cache[uid] = (rv, id(configs), selected, state)
            for c in state.configs:
                if c.state in METRIC_STATES and c.config in known:
                    counts[(c.config, c.state)] = counts.get((c.config, c.state), 0) + 1
            # An Event only for a pod the webhook never injected at all (no status annotation): the
            # silent miss. One injected before a config existed is `missing` too, but no Event.
            gone = [c.config for c in state.configs if c.state == fleet.MISSING]
            if gone and configs.status_key not in (m.get("annotations") or {}):
                missing.append((p, gone))
        self._cache = cache
        for name in known:  # every config in force appears, at zero if need be
            for s in METRIC_STATES:
                counts.setdefault((name, s), 0)
        return counts, missing

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(self.pods.run()), asyncio.ensure_future(self.namespaces.run())]
        try:
            await self.pods.synced.wait()
            await self.namespaces.synced.wait()
            loop = asyncio.get_running_loop()
            while True:
                self._dirty.clear()
                try:
                    selector, _, note = await webhook_selector(self.api, self.webhook_config)
                except (ApiError, OSError) as e:
                    selector, note = None, f"webhook configuration not read: {e}"
                if note and self.passes == 0:
                    self.log.warning("fleet metrics: " + note)
                pods = list(self.pods.store.values())
                labels = {str((n.get("metadata") or {}).get("name")): (n.get("metadata") or {}).get("labels") or {}
                          for n in self.namespaces.store.values()}
                counts, missing = await loop.run_in_executor(None, self._judge, pods, labels, selector,
                                                             self.configs())
                self.publish(counts)
                self.passes += 1
                if self.events:
                    await self._record(missing)
                await asyncio.sleep(self.min_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), self.resync)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _workload(self, pod: dict[str, Any]) -> dict[str, Any]:
        """The top owning workload's object (the pod itself for a bare pod)."""
        obj = pod
        ns = str((pod.get("metadata") or {}).get("namespace"))
        for _ in range(3):
            ref = fleet.controller_of(obj)
            if ref is None or ref[0] not in WORKLOAD_PATHS:
                break
            try:
                parent = await self.api.get(WORKLOAD_PATHS[ref[0]].format(ns=ns, name=ref[1]))
            except ApiError:
                break
            parent.setdefault("kind", ref[0])
            obj = parent
        obj.setdefault("kind", "Pod")
        return obj

    async def _record(self, missing: list[tuple[dict[str, Any], list[str]]]) -> None:
        written = 0
        for pod, configs in missing:
            m = pod.get("metadata") or {}
            uid = str(m.get("uid"))
            if uid in self._evented or written >= self.max_events_per_pass:
                continue
            ns, name = str(m.get("namespace")), str(m.get("name"))
            target = await self._workload(pod)
            tm = target.get("metadata") or {}
            kind = str(target.get("kind"))
            api_version = "v1" if kind == "Pod" else ("batch/v1" if kind in ("Job", "CronJob") else "apps/v1")
            now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = (f"pod {name} was created without the sidecar config(s) {', '.join(configs)} it should carry "
                       "(the webhook was not called or failed open, e.g. down under failurePolicy: Ignore); "
                       f"`sidecar-injector rollout --missing -n {ns}` restarts its workload")
            event = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{tm.get('name')}.sidecar-missing.{uid[:13]}"[:253], "namespace": ns},
                "involvedObject": {"apiVersion": api_version, "kind": kind, "name": tm.get("name"), "namespace": ns,
                                   "uid": tm.get("uid")},
                "reason": EVENT_REASON, "message": message[:1024], "type": "Warning",
                "source": {"component": "sidecar-injector", "host": self.identity[:128]},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            }
            try:
                await self.api.request("POST", f"/api/v1/namespaces/{ns}/events", body=event)
            except ApiError as e:
                if e.code != 409:  # 409: another replica, or an earlier run, already said it
                    self.log.warning("fleet event not written", pod=f"{ns}/{name}", error=str(e)[:300])
                    continue
            else:
                written += 1
                self.events_written += 1
                self.log.warning("pod missing its sidecars", namespace=ns, pod=name, configs=configs,
                                 workload=f"{kind}/{tm.get('name')}")
            self._evented.add(uid)
        live = {str((p.get("metadata") or {}).get("uid")) for p in self.pods.store.values()}
        self._evented &= live
