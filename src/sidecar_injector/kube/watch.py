"""List-then-watch of one resource across the cluster, the way client-go's reflector does it.

1. LIST: the store is replaced by what the apiserver holds, at its ``resourceVersion``;
2. WATCH from that version with ``allowWatchBookmarks`` (bookmarks move the version forward
   without an object, so a reconnect resumes from a recent version); a watch the server ends
   (``timeoutSeconds``) is reopened from the last version seen;
3. ``410 Gone`` (the version was compacted away): relist at once;
4. any other failure (the apiserver restarting, a network error): relist after a backoff that
   doubles to 30 s, with jitter, so that many replicas do not reconnect in step;
5. every ``resync`` seconds (jittered), relist anyway: a safety net that costs one LIST.

``on_change`` is called after each change to the store (the caller debounces).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, Protocol

import httpx2 as httpx

from sidecar_injector.kube.client import Api, ApiError

__all__ = ["Log", "Reflector"]


class Log(Protocol):
    def info(self, msg: str, **fields: Any) -> None: ...
    def warning(self, msg: str, **fields: Any) -> None: ...
    def error(self, msg: str, **fields: Any) -> None: ...


def key_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Reflector:
    """Keeps ``store`` (key -> object) equal to the apiserver's objects at ``path``."""

    def __init__(self, api: Api, path: str, on_change: Callable[[], None], log: Log, *,
                 resync: float = 300.0, watch_timeout: int = 240, max_backoff: float = 30.0) -> None:
        self.api = api
        self.path = path
        self.on_change = on_change
        self.log = log
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.max_backoff = max_backoff
        self.store: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0

    async def run(self) -> None:
        backoff = 0.25
        while True:
            try:
                await self._list()
                backoff = 0.25
                await self._watch()  # returns when it is time to resync
                continue
            except ApiError as e:
                if e.code == 410:
                    self.log.info("watch expired (410 Gone): relisting", path=self.path)
                    continue
                self.log.warning("list/watch failed", path=self.path, error=str(e)[:300])
            except (httpx.HTTPError, OSError, ValueError) as e:
                self.log.warning("list/watch failed", path=self.path, error=f"{type(e).__name__}: {e}"[:300])
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, self.max_backoff)

    async def _list(self) -> None:
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "500"}
        while True:
            page = await self.api.get(self.path, params)
            items += page.get("items") or []
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                break
            params = {"limit": "500", "continue": meta["continue"]}
        self.resource_version = str(meta.get("resourceVersion", ""))
        self.store = {key_of(o): o for o in items}
        self.relists += 1
        self.synced.set()
        self.on_change()

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.resync * random.uniform(0.9, 1.1)
        while (remaining := deadline - loop.time()) > 1:
            timeout = int(min(self.watch_timeout, remaining))
            params = {"resourceVersion": self.resource_version, "allowWatchBookmarks": "true",
                      "timeoutSeconds": str(timeout)}
            async for event in self.api.watch(self.path, params, timeout=timeout + 30):
                obj = event.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                kind = event.get("type")
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    self.store.pop(key_of(obj), None)
                elif kind in ("ADDED", "MODIFIED"):
                    self.store[key_of(obj)] = obj
                else:
                    continue
                self.on_change()
