"""``serve --config-source kubernetes|both``: the config set from the API, live.

Two :class:`~sidecar_injector.kube.watch.Reflector` keep the ``ClusterSidecarConfig`` and
``SidecarConfig`` objects of the cluster; every change (debounced by a few milliseconds)
rebuilds the ConfigSet in a worker thread and hands it to ``publish``, which swaps it in with
one attribute store: the request path never waits on the API. With ``both``, the file configs
(polled as before) come first and win a name collision.

Each object is validated exactly as the loader validates a file (:mod:`sidecar_injector.config.apiconfig`),
once per ``(uid, generation)``. An invalid new generation keeps the object's last valid one in
force (the validating webhook refuses it at apply time anyway, unless it was bypassed). The
status of each object (``Accepted``, ``Ready``, ``observedGeneration``) is written by the
replica holding the Lease (:mod:`sidecar_injector.kube.leader`), only when it differs from the
object's, so many replicas make no write storm.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx

from sidecar_injector.config import apiconfig, configload
from sidecar_injector.config.crd import API_VERSION, CLUSTER_KIND, LEASE_NAME, NAMESPACED_KIND, PLURALS
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION, pod_schema
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.kube.client import Api, ApiError
from sidecar_injector.kube.leader import LeaderElector
from sidecar_injector.kube.watch import Log, Reflector

__all__ = ["ApiConfigSource", "desired_status"]

_FIELD_MANAGER = "sidecar-injector"


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message[:32000],
            "observedGeneration": generation}


def desired_status(generation: int, problems: list[str], in_force_generation: int | None,
                   duplicate: str | None) -> dict[str, Any]:
    """The status an object should have (without transition times). Pure."""
    if duplicate:
        conditions = [_condition("Accepted", False, "Duplicate", duplicate, generation),
                      _condition("Ready", False, "Duplicate", "not in force: " + duplicate, generation)]
    elif problems:
        accepted = _condition("Accepted", False, "Invalid", "\n".join(problems), generation)
        if in_force_generation is not None:
            ready = _condition("Ready", True, "PreviousGenerationInForce",
                               f"generation {in_force_generation} stays in force until this one is fixed",
                               generation)
        else:
            ready = _condition("Ready", False, "Invalid", "not in force: the config is invalid", generation)
        conditions = [accepted, ready]
    else:
        conditions = [_condition("Accepted", True, "Valid", "the config is valid", generation),
                      _condition("Ready", True, "InForce", "in force for new pods", generation)]
    return {"observedGeneration": generation, "conditions": conditions}


def _same(current: Any, desired: dict[str, Any]) -> bool:
    if not isinstance(current, dict) or current.get("observedGeneration") != desired["observedGeneration"]:
        return False
    have = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
    for c in desired["conditions"]:
        h = have.get(c["type"])
        if h is None or any(h.get(k) != c[k] for k in ("status", "reason", "message", "observedGeneration")):
            return False
    return len(have) == len(desired["conditions"])


def _with_times(current: Any, desired: dict[str, Any]) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    have = {c.get("type"): c for c in (current or {}).get("conditions") or [] if isinstance(c, dict)}
    conditions = []
    for c in desired["conditions"]:
        h = have.get(c["type"])
        same = h is not None and h.get("status") == c["status"] and h.get("lastTransitionTime")
        conditions.append({**c, "lastTransitionTime": h["lastTransitionTime"] if same and h else now})
    return {**desired, "conditions": conditions}


class ApiConfigSource:
    def __init__(self, api: Api, log: Log, publish: Callable[[ConfigSet], None], *,
                 file_path: str | Path | None = None, prefix: str = DEFAULT_PREFIX,
                 kube_version: str = DEFAULT_KUBE_VERSION, namespace: str = "default",
                 identity: str = "sidecar-injector", file_interval: float = 5.0,
                 on_file_failed: Callable[[], None] | None = None, write_status: bool = True,
                 resync: float = 300.0) -> None:
        self.api = api
        self.log = log
        self.publish = publish
        self.prefix = prefix
        self.schema = pod_schema(kube_version)
        self.file_path = file_path
        self.file_interval = file_interval
        self.on_file_failed = on_file_failed
        self.file_entries: list[apiconfig.Entry] = []
        self._file_fingerprint = ""
        self._failed_fingerprint = ""
        if file_path is not None:
            self._load_file()  # raises ConfigError: a broken file at start is a start failure
        base = f"/apis/{API_VERSION}"
        self.cluster = Reflector(api, f"{base}/{PLURALS[CLUSTER_KIND]}", self._changed, log, resync=resync)
        self.namespaced = Reflector(api, f"{base}/{PLURALS[NAMESPACED_KIND]}", self._changed, log, resync=resync)
        self.elector = LeaderElector(api, namespace, LEASE_NAME, identity, log,
                                     on_change=lambda leader: self._changed()) if write_status else None
        self._dirty = asyncio.Event()
        self._cache: dict[tuple[str, int], tuple[apiconfig.Entry | None, list[str]]] = {}
        self._last_good: dict[str, tuple[int, apiconfig.Entry]] = {}
        self._desired: dict[str, dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.status_writes = 0
        self.builds = 0
        self.last_build_at = 0.0

    def _changed(self) -> None:
        self._dirty.set()

    # ---- files (with --config-source both) ----

    def _load_file(self) -> None:
        assert self.file_path is not None
        before = configload.fingerprint(self.file_path)
        entries = [apiconfig.parse_object(doc, src, schema=self.schema)
                   for src, doc in configload.read_documents(self.file_path) if doc is not None]
        # Duplicates among the files are a load error, as in file mode.
        seen: dict[tuple[str | None, str], str] = {}
        for e in entries:
            k = (e.namespace, e.config.name)
            if k in seen:
                raise ConfigError(f"{e.config.source}: metadata.name: {e.config.name!r} is already defined in "
                                  f"{seen[k]}")
            seen[k] = e.config.source
        self.file_entries = entries
        self._file_fingerprint = before

    async def _poll_file(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.file_path is not None
        while True:
            await asyncio.sleep(self.file_interval)
            fp = configload.fingerprint(self.file_path)
            if fp in (self._file_fingerprint, self._failed_fingerprint):
                continue
            try:
                await loop.run_in_executor(None, self._load_file)
            except Exception as e:
                self._failed_fingerprint = fp
                if self.on_file_failed is not None:
                    self.on_file_failed()
                self.log.error("config reload failed; the previous config stays in force",
                               path=str(self.file_path), error=str(e))
                continue
            self._failed_fingerprint = ""
            self._changed()

    # ---- building the set ----

    def _check(self, obj: dict[str, Any]) -> tuple[apiconfig.Entry | None, list[str]]:
        meta = obj.get("metadata") or {}
        k = (str(meta.get("uid")), int(meta.get("generation") or 0))
        found = self._cache.get(k)
        if found is None:
            found = self._cache[k] = apiconfig.check_object(obj, schema=self.schema)
        return found

    def _build(self, objects: list[dict[str, Any]]) -> ConfigSet:
        entries = list(self.file_entries)
        info: list[tuple[str, int, list[str], int | None]] = []
        live: set[tuple[str, int]] = set()
        uids = set()
        for obj in objects:
            meta = obj.get("metadata") or {}
            uid, generation = str(meta.get("uid")), int(meta.get("generation") or 0)
            live.add((uid, generation))
            uids.add(uid)
            entry, problems = self._check(obj)
            if entry is not None:
                self._last_good[uid] = (generation, entry)
            good = self._last_good.get(uid)
            if good is not None:
                entries.append(good[1])
            info.append((uid, generation, problems, good[0] if good else None))
        for k in [k for k in self._cache if k not in live]:
            del self._cache[k]
        for uid in [u for u in self._last_good if u not in uids]:
            del self._last_good[uid]
        configs, duplicates = apiconfig.build_set(entries, self.prefix, self.schema.native_sidecars)
        desired = {}
        for uid, generation, problems, in_force in info:
            good = self._last_good.get(uid)
            dup = duplicates.get(good[1].key) if good else None
            desired[uid] = desired_status(generation, problems, in_force, dup)
        self._desired = desired
        return configs

    async def _rebuild_loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self.cluster.synced.wait()
        await self.namespaced.synced.wait()
        while True:
            await asyncio.sleep(0.02)  # coalesce a burst of events
            self._dirty.clear()
            objects = [*sorted(self.cluster.store.values(), key=lambda o: o["metadata"]["name"]),
                       *sorted(self.namespaced.store.values(),
                               key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))]
            try:
                configs = await loop.run_in_executor(None, self._build, objects)
            except Exception as e:  # a bug: keep the last set, say so, try again on the next change
                self.log.error("config rebuild failed; the previous configs stay in force",
                               error=f"{type(e).__name__}: {e}")
            else:
                self.publish(configs)
                self.builds += 1
                self.last_build_at = time.monotonic()
                if not self.ready.is_set():
                    self.ready.set()
                await self._write_status(objects)
            await self._dirty.wait()

    async def _write_status(self, objects: list[dict[str, Any]]) -> None:
        if self.elector is None or not self.elector.is_leader:
            return
        for obj in objects:
            meta = obj.get("metadata") or {}
            want = self._desired.get(str(meta.get("uid")))
            if want is None or _same(obj.get("status"), want):
                continue
            ns = meta.get("namespace")
            kind = NAMESPACED_KIND if ns else CLUSTER_KIND
            path = (f"/apis/{API_VERSION}/namespaces/{ns}/{PLURALS[kind]}/{meta['name']}/status" if ns
                    else f"/apis/{API_VERSION}/{PLURALS[kind]}/{meta['name']}/status")
            body = {"status": _with_times(obj.get("status"), want)}
            try:
                await self.api.request("PATCH", path, body=body, content_type="application/merge-patch+json",
                                       params={"fieldManager": _FIELD_MANAGER})
            except ApiError as e:
                if e.code != 404:  # deleted meanwhile: nothing to report on
                    self.log.warning("status not written", object=apiconfig.describe(kind, meta["name"], ns),
                                     error=str(e)[:300])
                continue
            except (httpx.HTTPError, OSError) as e:
                self.log.warning("status not written", error=f"{type(e).__name__}: {e}"[:300])
                return
            self.status_writes += 1
            self.log.info("status written", object=apiconfig.describe(kind, meta["name"], ns),
                          generation=want["observedGeneration"],
                          ready=want["conditions"][1]["status"], reason=want["conditions"][1]["reason"])

    async def run(self) -> None:
        tasks = [asyncio.ensure_future(c) for c in (self.cluster.run(), self.namespaced.run(), self._rebuild_loop())]
        if self.elector is not None:
            tasks.append(asyncio.ensure_future(self.elector.run()))
        if self.file_path is not None:
            tasks.append(asyncio.ensure_future(self._poll_file()))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self.elector is not None:
                await self.elector.release()
