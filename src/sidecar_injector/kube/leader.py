"""Leader election on a ``coordination.k8s.io/v1`` Lease, the protocol of client-go's leaderelection.

One replica at a time holds the Lease and writes status; the others watch it. The holder
renews every ``renew`` seconds; another replica takes over when it has seen the same record
unchanged for ``duration`` seconds (judged by its own monotonic clock, never by comparing
timestamps across machines, as client-go does). Every write carries the ``resourceVersion``
read, so two candidates cannot both win: the loser gets 409 Conflict. A holder that fails to
renew for ``duration`` stops acting as leader before anyone else can take over. On shutdown the
holder releases the Lease (empty holder), so a successor takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx

from sidecar_injector.kube.client import Api, ApiError
from sidecar_injector.kube.watch import Log

__all__ = ["LeaderElector"]


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: Api, namespace: str, name: str, identity: str, log: Log, *,
                 duration: float = 15.0, renew: float = 5.0, retry: float = 2.0,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.api = api
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self.name = name
        self.identity = identity
        self.log = log
        self.duration = duration
        self.renew = renew
        self.retry = retry
        self.on_change = on_change
        self._leader = False
        self._renewed_at = 0.0  # monotonic time of our last successful write as leader
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    @property
    def is_leader(self) -> bool:
        # A holder that could not renew within the duration may already have been replaced.
        return self._leader and time.monotonic() - self._renewed_at < self.duration

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            self.log.info("leader election", leader=leader, identity=self.identity, lease=self.name)
            if self.on_change is not None:
                self.on_change(leader)

    async def run(self) -> None:
        while True:
            try:
                self._set(await self.try_acquire_or_renew())
            except (ApiError, httpx.HTTPError, OSError, ValueError) as e:
                self.log.warning("leader election: lease not renewed", error=str(e)[:300])
                if not self.is_leader:
                    self._set(False)
            await asyncio.sleep(self.renew if self._leader else self.retry)

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _now()
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.duration),
                "renewTime": now, "acquireTime": now, "leaseTransitions": 0}
        if previous:
            transitions = int(previous.get("leaseTransitions") or 0)
            if previous.get("holderIdentity") == self.identity:
                spec["acquireTime"] = previous.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One round: True if we hold the Lease afterwards."""
        try:
            lease = await self.api.get(self.path)
        except ApiError as e:
            if e.code != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name}, "spec": self._spec(None)}
            try:
                await self.api.request("POST", self.collection, body=body)
            except ApiError as e2:
                if e2.code == 409:
                    return False
                raise
            self._renewed_at = time.monotonic()
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.duration)
        expired = now - self._observed_at > duration
        if holder and holder != self.identity and not expired:
            return False
        lease["spec"] = self._spec(spec)
        try:
            await self.api.request("PUT", self.path, body=lease)
        except ApiError as e:
            if e.code == 409:
                return False
            raise
        self._renewed_at = time.monotonic()
        return True

    async def release(self) -> None:
        """Give the Lease up (on shutdown), so that another replica takes over at once."""
        if not self._leader:
            return
        self._set(False)
        with contextlib.suppress(ApiError, httpx.HTTPError, OSError, ValueError):
            lease = await self.api.get(self.path)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                spec["holderIdentity"] = None
                spec["leaseDurationSeconds"] = 1
                spec["renewTime"] = _now()
                lease["spec"] = spec
                await self.api.request("PUT", self.path, body=lease)
