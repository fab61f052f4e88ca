"""The server's side of ``--config-source kubernetes|both``: runs the API config source
(:mod:`sidecar_injector.kube.source`) on the server's loop and swaps its config sets into the
server's :class:`~sidecar_injector.server.app.State`. Imported only in those modes, so a
file-only server never loads the API client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sidecar_injector.core.config import ConfigSet
from sidecar_injector.kube.client import Api, identity, load_config, server_namespace
from sidecar_injector.kube.source import ApiConfigSource
from sidecar_injector.server.app import State
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics

__all__ = ["ApiSource"]


class ApiSource:
    def __init__(self, state: State, metrics: Metrics, log: JsonLog, *, kubeconfig: str | None,
                 file_path: str | Path | None, prefix: str, kube_version: str, file_interval: float) -> None:
        self.state = state
        self.metrics = metrics
        self.log = log
        self.config = load_config(kubeconfig)
        self.namespace = server_namespace(self.config)
        self.identity = identity()
        self._args = dict(file_path=file_path, prefix=prefix, kube_version=kube_version, file_interval=file_interval)
        self.source: ApiConfigSource | None = None
        self.api: Api | None = None

    def _publish(self, configs: ConfigSet) -> None:
        first = not self.state.loaded
        self.state.configs = configs  # one attribute store: the next request uses it
        self.state.loaded = True
        self.metrics.config_loaded(len(configs.configs) + sum(
            len(s.configs) - len(configs.configs) for s in configs.scoped.values()))
        names = [c.name for c in configs.configs]
        scoped = {ns: [c.name for c in s.configs] for ns, s in configs.scoped.items()}
        self.log.info("configs loaded from the API" if first else "configs updated", configs=names,
                      namespaced=scoped)

    async def run(self) -> None:
        self.api = Api(self.config)
        self.source = ApiConfigSource(self.api, self.log, self._publish, namespace=self.namespace,
                                      identity=self.identity, on_file_failed=self.metrics.config_failed,
                                      **self._args)  # type: ignore[arg-type]
        self.log.info("watching SidecarConfig objects", server=self.config.cluster.server,
                      lease_namespace=self.namespace, identity=self.identity,
                      files=str(self._args["file_path"]) if self._args["file_path"] else None)
        try:
            await self.source.run()
        finally:
            await asyncio.shield(self.api.aclose())
