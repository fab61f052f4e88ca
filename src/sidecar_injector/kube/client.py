"""A small async API client: lightkube's kubeconfig and in-cluster handling, our own requests.

lightkube (with its httpx fork) was chosen by measurement among the maintained async clients
(README, "SidecarConfig as a Kubernetes API"): the smallest install and import. We use its
configuration (kubeconfig files, exec and token-file credentials, in-cluster service account)
and its authenticated HTTP client, and make the few requests we need as plain JSON: objects are
never round-tripped through models, and the watch protocol (bookmarks, 410 Gone) is ours.

Credentials: ``--kubeconfig PATH``, else ``$KUBECONFIG``, else the in-cluster service account,
else ``~/.kube/config``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from sidecar_injector.core.errors import InjectorError

__all__ = ["Api", "ApiError", "KubeError", "identity", "in_cluster", "load_config", "server_namespace"]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(InjectorError):
    """No usable cluster credentials."""


class ApiError(Exception):
    """A non-2xx answer; ``code`` is the HTTP status (410 Gone, 409 Conflict, 404...)."""

    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(f"{code} {reason}: {message}" if reason else f"{code}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICE_ACCOUNT / "token").exists()


def load_config(kubeconfig: str | None = None) -> SingleConfig:
    """``kubeconfig``, else ``$KUBECONFIG``, else in-cluster credentials, else ``~/.kube/config``."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    try:
        if path:
            config = KubeConfig.from_file(path.split(os.pathsep)[0]).get()
        elif in_cluster():
            config = KubeConfig.from_service_account().get()
        else:
            config = KubeConfig.from_file("~/.kube/config").get()
    except (LightkubeConfigError, OSError, KeyError, ValueError) as e:
        raise KubeError(f"no Kubernetes credentials ({path or 'in-cluster, then ~/.kube/config'}): {e}") from None
    if config is None:
        raise KubeError(f"{path}: no current context")
    return config


def server_namespace(config: SingleConfig | None) -> str:
    """Where the server's own objects (its Lease) live: ``$POD_NAMESPACE``, else the in-cluster
    namespace file, else the kubeconfig context's namespace, else ``default``."""
    ns = os.environ.get("POD_NAMESPACE")
    if ns:
        return ns
    try:
        return (SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
    except OSError:
        pass
    if config is not None and config.context is not None and config.context.namespace:
        return str(config.context.namespace)
    return "default"


def identity() -> str:
    """``$POD_NAME``, else the host name and the process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


class Api:
    """JSON requests to one apiserver. Create and use it on one event loop."""

    def __init__(self, config: SingleConfig, timeout: float = 10.0) -> None:
        params = client_adapter.ConnectionParams(timeout=httpx.Timeout(timeout))
        self.http: httpx.AsyncClient = client_adapter.AsyncClient(config, params)
        self.config = config

    async def aclose(self) -> None:
        await self.http.aclose()

    @staticmethod
    def _error(resp: httpx.Response) -> ApiError:
        try:
            status = json.loads(resp.content)
            return ApiError(resp.status_code, str(status.get("message", "")), str(status.get("reason", "")))
        except ValueError:
            return ApiError(resp.status_code, resp.text[:300])

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = content_type
        resp = await self.http.request(method, path, params=params, content=content, headers=headers)
        if resp.status_code >= 300:
            raise self._error(resp)
        out: dict[str, Any] = json.loads(resp.content) if resp.content else {}
        return out

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def watch(self, path: str, params: dict[str, str], timeout: float) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request (``{"type", "object"}``), until the server ends it.
        A watch ERROR event is raised as ApiError (410 Gone: relist)."""
        t = httpx.Timeout(10.0, read=timeout)
        async with self.http.stream("GET", path, params={**params, "watch": "1"}, timeout=t,
                                    headers={"Accept": "application/json"}) as resp:
            if resp.status_code >= 300:
                await resp.aread()
                raise self._error(resp)
            async for line in resp.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code") or 500), str(status.get("message", "")),
                                   str(status.get("reason", "")))
                yield event
