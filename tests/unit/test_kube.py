"""The API side without an apiserver: leader election on a Lease (one holder, takeover only after
the lease expired on the candidate's own clock, 409 loses), the reflector's relist on 410 Gone and
bookmarks, the desired status and its no-write-when-equal rule."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sidecar_injector.kube import source as ksource
from sidecar_injector.kube.client import ApiError
from sidecar_injector.kube.leader import LeaderElector
from sidecar_injector.kube.watch import Reflector


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, msg: str, **fields: Any) -> None:
        self.lines.append((msg, fields))

    warning = error = info


class FakeLeases:
    """An apiserver holding Leases, with resourceVersion checks (409 on a stale write)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 0

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        if path not in self.objects:
            raise ApiError(404, "not found")
        return copy.deepcopy(self.objects[path])

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        self.rv += 1
        if method == "POST":
            full = f"{path}/{body['metadata']['name']}"
            if full in self.objects:
                raise ApiError(409, "exists")
            body["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[full] = body
            return body
        current = self.objects[path]
        if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict")
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[path] = body
        return body


def test_one_leader_and_takeover_only_after_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeLeases()
    clock = [1000.0]
    monkeypatch.setattr("sidecar_injector.kube.leader.time.monotonic", lambda: clock[0])
    a = LeaderElector(api, "ns", "lease", "a", Log(), duration=15)  # type: ignore[arg-type]
    b = LeaderElector(api, "ns", "lease", "b", Log(), duration=15)  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await a.try_acquire_or_renew() is True
        assert await b.try_acquire_or_renew() is False
        clock[0] += 10
        assert await a.try_acquire_or_renew() is True  # renewed
        assert await b.try_acquire_or_renew() is False  # b saw a new record: the clock restarts
        clock[0] += 14
        assert await b.try_acquire_or_renew() is False  # not yet expired on b's clock
        clock[0] += 2
        assert await b.try_acquire_or_renew() is True  # a stopped renewing: b takes over
        spec = api.objects["/apis/coordination.k8s.io/v1/namespaces/ns/leases/lease"]["spec"]
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        a._leader, a._renewed_at = True, clock[0] - 20
        assert a.is_leader is False  # could not renew within the duration: no longer acts as leader
        b._leader = True
        await b.release()
        assert api.objects["/apis/coordination.k8s.io/v1/namespaces/ns/leases/lease"]["spec"]["holderIdentity"] is None
        assert await a.try_acquire_or_renew() is True  # released: taken at once

    asyncio.run(scenario())


def test_stale_write_loses_with_409() -> None:
    api = FakeLeases()
    a = LeaderElector(api, "ns", "lease", "a", Log())  # type: ignore[arg-type]

    async def scenario() -> None:
        assert await a.try_acquire_or_renew()
        original = api.request

        async def racing(method: str, path: str, **kw: Any) -> dict[str, Any]:
            api.objects[path]["metadata"]["resourceVersion"] = "other"  # someone wrote meanwhile
            return await original(method, path, **kw)

        api.request = racing  # type: ignore[method-assign]
        assert await a.try_acquire_or_renew() is False

    asyncio.run(scenario())


class FakeWatchApi:
    def __init__(self) -> None:
        self.lists = 0
        self.watches: list[dict[str, str]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        self.lists += 1
        items = [{"metadata": {"name": "a", "resourceVersion": "5"}}] if self.lists == 1 else []
        return {"metadata": {"resourceVersion": "10" if self.lists == 1 else "50"}, "items": items}

    async def watch(self, path: str, params: dict[str, str], timeout: float) -> AsyncIterator[dict[str, Any]]:
        self.watches.append(dict(params))
        if len(self.watches) == 1:
            yield {"type": "ADDED", "object": {"metadata": {"name": "b", "resourceVersion": "11"}}}
            yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}}
            return  # the server ended the watch: reopened from the bookmark's version
        if len(self.watches) == 2:
            raise ApiError(410, "too old", "Expired")
        await asyncio.sleep(3600)
        yield {}


def test_reflector_bookmarks_and_relist_on_410() -> None:
    api = FakeWatchApi()
    changes: list[int] = []
    r = Reflector(api, "/x", lambda: changes.append(1), Log())  # type: ignore[arg-type]

    async def scenario() -> None:
        task = asyncio.ensure_future(r.run())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if api.lists == 2 and len(api.watches) == 3:
                break
        task.cancel()

    asyncio.run(scenario())
    assert api.watches[0]["resourceVersion"] == "10" and api.watches[0]["allowWatchBookmarks"] == "true"
    assert api.watches[1]["resourceVersion"] == "20"  # from the bookmark
    assert api.lists == 2 and api.watches[2]["resourceVersion"] == "50"  # relisted after 410
    assert r.store == {}  # the relist replaced the store (a and b are gone)


def test_desired_status_and_no_write_when_equal() -> None:
    ok = ksource.desired_status(3, [], 3, None)
    assert [(c["type"], c["status"], c["reason"]) for c in ok["conditions"]] == [
        ("Accepted", "True", "Valid"), ("Ready", "True", "InForce")]
    bad = ksource.desired_status(4, ["spec.x: unknown field"], 3, None)
    assert [(c["status"], c["reason"]) for c in bad["conditions"]] == [
        ("False", "Invalid"), ("True", "PreviousGenerationInForce")]
    dup = ksource.desired_status(1, [], 1, "metadata.name: 'a' is already defined by f.yaml (files win)")
    assert dup["conditions"][1]["status"] == "False" and dup["conditions"][1]["reason"] == "Duplicate"
    written = ksource._with_times(None, ok)
    assert ksource._same(written, ok)
    assert not ksource._same(written, bad)
    again = ksource._with_times(written, ok)
    assert again == written  # the transition times are kept when nothing changed
