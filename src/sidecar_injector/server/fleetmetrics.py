"""``serve --fleet-metrics``: the fleet as a metric, and Events on workloads (issue 12).

``sidecar_injector_pods{config,state}``: running pods per config in force and state
(``up-to-date``, ``stale``, ``missing``, ``unexpected``), judged as ``sidecar-injector status``
judges them (:mod:`sidecar_injector.core.fleet`) against the configs this server has in force.
Bounded cardinality: the names of the configs in force only (at most ``_CONFIGS_MAX``), never a
namespace or a pod name. Alert on ``sidecar_injector_pods{state="missing"} > 0``.

A pod found missing a config gets one Warning Event (reason ``SidecarMissing``) on its owning
workload, so ``kubectl describe deployment`` shows it. This component holds the rights for it
(list/watch pods and namespaces, get the owners and the webhook configuration, create events:
the ``<name>-fleet-metrics`` ClusterRole); the admission path never writes anything.

Imported only with ``--fleet-metrics``: a server without it never loads the API client for it.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Gauge

from sidecar_injector.kube.client import Api, identity, load_config
from sidecar_injector.kube.fleet import FleetWatch
from sidecar_injector.server.app import State
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics

__all__ = ["FleetMetrics"]

_CONFIGS_MAX = 256


class FleetMetrics:
    def __init__(self, state: State, metrics: Metrics, log: JsonLog, *, kubeconfig: str | None,
                 webhook_config: str) -> None:
        self.state = state
        self.log = log
        self.kubeconfig = kubeconfig
        self.webhook_config = webhook_config
        self.gauge = Gauge("sidecar_injector_pods",
                           "Running pods by config in force and state (up-to-date, stale, missing, unexpected), "
                           "as `sidecar-injector status` judges them.",
                           ["config", "state"], registry=metrics.registry, multiprocess_mode="livemax")
        self.watch: FleetWatch | None = None

    def publish(self, counts: dict[tuple[str, str], int]) -> None:
        names = sorted({c for c, _ in counts})
        keep = set(names[:_CONFIGS_MAX])
        self.gauge.clear()  # configs deleted since: their series go (same loop as /metrics: no torn scrape)
        for (config, state), n in counts.items():
            self.gauge.labels(config if config in keep else "other", state).inc(n)

    async def run(self) -> None:
        api = Api(load_config(self.kubeconfig))
        self.watch = FleetWatch(api, self.log, lambda: self.state.configs, self.publish,
                                webhook_config=self.webhook_config, identity=identity())
        while not self.state.loaded:  # --config-source kubernetes: the first list is not in yet
            await asyncio.sleep(0.5)
        self.log.info("fleet metrics: watching pods", webhook_config=self.webhook_config)
        try:
            await self.watch.run()
        finally:
            await asyncio.shield(api.aclose())
