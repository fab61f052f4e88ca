"""The fleet's rollout: restart workloads the way ``kubectl rollout restart`` does and wait for
each to become ready, one bounded group at a time, stopping at the first failure; and whether a
workload object itself opts out of injection.

Separate from :mod:`sidecar_injector.kube.fleet` (listing and classifying the pods, the fleet
metrics and Events), which only reads: this is the part that writes, and it needs ``patch`` on
Deployments, StatefulSets and DaemonSets. It reads and writes one workload object at a time,
through :data:`WORKLOAD_PATHS`, which the fleet watch also uses to read the workload owning a pod.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sidecar_injector.core import fleet
from sidecar_injector.kube.client import Api, ApiError

__all__ = ["WORKLOAD_PATHS", "RolloutResult", "restart", "rollout", "wait_ready", "workload_opted_out"]

#: API path of each workload kind.
WORKLOAD_PATHS = {
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}",
    "ReplicaSet": "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
    "CronJob": "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
}


def _path(owner: fleet.Owner) -> str:
    return WORKLOAD_PATHS[owner.kind].format(ns=owner.namespace, name=owner.name)


async def workload_opted_out(api: Api, owner: fleet.Owner, inject_key: str) -> bool:
    """The workload object itself carries ``inject: "false"`` (label or annotation)."""
    if owner.kind not in fleet.RESTARTABLE:
        return False
    try:
        obj = await api.get(_path(owner))
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    meta = obj.get("metadata") or {}
    for values in (meta.get("annotations") or {}, meta.get("labels") or {}):
        v = values.get(inject_key)
        if isinstance(v, str) and v.strip().lower() == "false":
            return True
    return False


@dataclass
class RolloutResult:
    done: list[fleet.Owner] = field(default_factory=list)
    failed: list[tuple[fleet.Owner, str]] = field(default_factory=list)
    not_started: list[fleet.Owner] = field(default_factory=list)


async def restart(api: Api, owner: fleet.Owner, now: str | None = None) -> dict[str, Any]:
    stamp = now or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return await api.request("PATCH", _path(owner), body=fleet.restart_patch(stamp),
                             content_type="application/strategic-merge-patch+json",
                             params={"fieldManager": "sidecar-injector-rollout"})


async def wait_ready(api: Api, owner: fleet.Owner, timeout: float, poll: float = 1.0) -> tuple[bool, str]:
    """Poll the workload until ``kubectl rollout status`` would say done; (ok, message)."""
    deadline = time.monotonic() + timeout
    message = "not observed yet"
    while True:
        obj = await api.get(_path(owner))
        failed = fleet.rollout_failed(owner.kind, obj)
        if failed:
            return False, failed
        done, message = fleet.rollout_status(owner.kind, obj)
        if done:
            return True, message
        if time.monotonic() >= deadline:
            return False, f"not ready within {timeout:g}s: {message}"
        await asyncio.sleep(min(poll, max(0.05, deadline - time.monotonic())))


async def rollout(api: Api, plan: list[fleet.Owner], *, parallel: int, timeout: float,
                  report: Callable[[str], None], poll: float = 1.0,
                  restart_fn: Callable[[Api, fleet.Owner], Awaitable[Any]] | None = None) -> RolloutResult:
    """Restart ``plan`` in order, at most ``parallel`` at a time, each waited for until ready;
    no new restart after the first failure (those in flight are still waited for)."""
    result = RolloutResult()
    queue = list(plan)
    running: dict[asyncio.Task[tuple[bool, str]], fleet.Owner] = {}
    do_restart = restart_fn or restart

    async def one(o: fleet.Owner) -> tuple[bool, str]:
        try:
            await do_restart(api, o)
        except ApiError as e:
            return False, f"restart refused: {e}"
        report(f"restarted {o.kind.lower()}/{o.name} in {o.namespace}; waiting for it to become ready")
        return await wait_ready(api, o, timeout, poll)

    while queue or running:
        while queue and len(running) < max(1, parallel) and not result.failed:
            o = queue.pop(0)
            running[asyncio.ensure_future(one(o))] = o
        if not running:
            break
        finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for t in finished:
            o = running.pop(t)
            ok, msg = t.result()
            if ok:
                result.done.append(o)
                report(f"{o.kind.lower()}/{o.name} in {o.namespace} is ready ({msg})")
            else:
                result.failed.append((o, msg))
                report(f"{o.kind.lower()}/{o.name} in {o.namespace} FAILED: {msg}")
        if result.failed:
            result.not_started = list(queue)
            queue = []
    return result
