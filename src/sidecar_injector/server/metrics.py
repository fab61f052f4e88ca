"""Prometheus metrics, named after Istio's injector (``sidecar_injection_*``) with our prefix.

All series live in a registry of their own (not prometheus_client's global one) so that
several servers can run in one process, as the in-process tests do. With ``--workers``,
prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``): each worker
writes its values to files and the supervisor's ``/metrics`` adds counters and histograms
up across workers; a gauge shows the highest (``livemax``) or lowest (``livemin``) value
among live workers. Config and certificate reloads are counted once per worker.

====================================================================  ============================
name                                                                  meaning
====================================================================  ============================
``sidecar_injector_injection_requests_total{operation,outcome,code}`` every ``POST /mutate``;
                                                                      operation: CREATE, UPDATE,
                                                                      DELETE, CONNECT, other,
                                                                      unknown (none: refused
                                                                      before it was read);
                                                                      outcome: injected, skipped,
                                                                      error (ours), rejected (4xx);
                                                                      code: the HTTP status (200,
                                                                      400, 408, 413, 431, 500,
                                                                      503, else other)
``sidecar_injector_injection_success_total``                          pods that got a patch
``sidecar_injector_injections_total{config}``                         one per config injected into
                                                                      a pod (a pod given envoy and
                                                                      vault-agent counts once for
                                                                      each); config names only
``sidecar_injector_requests_in_flight``                               webhook-port requests begun
                                                                      (first byte) and not yet
                                                                      answered
``sidecar_injector_build_info{version,python}``                       always 1
``sidecar_injector_injection_skip_total{reason}``                     admitted unchanged, by reason
``sidecar_injector_injection_failure_total{reason}``                  rejected or failed requests:
                                                                      invalid-review, content-type,
                                                                      body-too-large,
                                                                      headers-too-large,
                                                                      request-timeout,
                                                                      malformed-http, server-busy,
                                                                      injection-error,
                                                                      internal-error
``sidecar_injector_admission_duration_seconds``                       histogram of the time spent
                                                                      answering one ``/mutate``
``sidecar_injector_config_reloads_total{result}``                     success / failure
``sidecar_injector_configs_loaded``                                   SidecarConfigs in force
``sidecar_injector_config_last_reload_success_timestamp_seconds``
``sidecar_injector_config_last_reload_successful``                    0 while the newest config
                                                                      content failed to load (the
                                                                      previous one in force), else 1
``sidecar_injector_cert_reloads_total{result}``                       success / failure
``sidecar_injector_serving_cert_expiry_timestamp_seconds``            notAfter of the serving cert
``sidecar_injector_ready``                                            1 while /readyz says ready
``sidecar_injector_connections{port}``                                connections holding a slot
``sidecar_injector_connections_refused_total{port,reason}``           refused at accept: total,
                                                                      per-address
====================================================================  ============================

Every label value comes from a fixed set, never from a request: request data as a label
(``request.operation`` was copied verbatim) let one client create a series per request.
``config`` takes the names of the loaded configs only (never a namespace or a pod name), and at
most ``_CONFIGS_MAX`` of them (past that, "other"). No counter exports a ``_created`` series
(``disable_created_metrics``): one series per counter less, and nothing alerts on it.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar_injector import __version__

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()

# Process-wide, and before any metric of any registry is made: no counter exports `_created`.
disable_created_metrics()  # type: ignore[no-untyped-call]

# The operations an AdmissionReview can carry; anything else is counted as "other".
_OPERATIONS = {op: op for op in ("CREATE", "UPDATE", "DELETE", "CONNECT")}
_OPERATIONS[""] = "unknown"
_OUTCOMES = frozenset({"injected", "skipped", "error", "rejected"})
_CODES = {code: str(code) for code in (200, 400, 405, 408, 413, 431, 500, 503)}
_REASONS_MAX = 64
"""Distinct skip or failure reasons kept as labels (the core's codes are a few dozen at most);
past that, "other". A guard, so that no code path can make the series unbounded."""
_CONFIGS_MAX = 256
"""Distinct config names kept as ``config`` labels; past that, "other"."""

# From 100 microseconds (a typical admission takes about 50) to a second.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The server's metrics. ``admission()`` is on the hot path: label children are cached."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sidecar_injector_injection_requests_total",
            "Admission requests received on /mutate, by operation, outcome and HTTP status code.",
            ["operation", "outcome", "code"], registry=r,
        )
        self.success = Counter(
            "sidecar_injector_injection_success_total", "Pods that were given a patch.", registry=r
        )
        self.injections = Counter(
            "sidecar_injector_injections_total",
            "Configs injected into pods: one per config per pod patched, by config name.",
            ["config"], registry=r,
        )
        self.in_flight = Gauge(
            "sidecar_injector_requests_in_flight",
            "Requests on the webhook port begun (first byte read) and not yet answered.", registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight_source: Callable[[], int] | None = None
        """Counts the requests in flight; read at each scrape and each second (``refresh``)."""
        self.build_info = Gauge(
            "sidecar_injector_build_info", "Always 1: the version of sidecar-injector and of Python.",
            ["version", "python"], registry=r, multiprocess_mode="livemax",
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.skip = Counter(
            "sidecar_injector_injection_skip_total", "Requests admitted unchanged, by reason.",
            ["reason"], registry=r,
        )
        self.failure = Counter(
            "sidecar_injector_injection_failure_total",
            "Requests rejected as unusable (4xx) or failed inside injection, by reason.",
            ["reason"], registry=r,
        )
        self.duration = Histogram(
            "sidecar_injector_admission_duration_seconds",
            "Time to answer one /mutate request, from complete request to response.",
            buckets=_BUCKETS, registry=r,
        )
        self.config_reloads = Counter(
            "sidecar_injector_config_reloads_total", "Config reload attempts, by result.",
            ["result"], registry=r,
        )
        self.configs_loaded = Gauge(
            "sidecar_injector_configs_loaded", "SidecarConfig documents in force.", registry=r,
            multiprocess_mode="livemax",
        )
        self.config_last_success = Gauge(
            "sidecar_injector_config_last_reload_success_timestamp_seconds",
            "When the config in force was loaded (Unix time).", registry=r, multiprocess_mode="livemax",
        )
        self.config_last_ok = Gauge(
            "sidecar_injector_config_last_reload_successful",
            "0 while the newest config failed to load and the previous one stays in force, else 1.",
            registry=r, multiprocess_mode="livemin",
        )
        self.config_last_ok.set(1)
        self.cert_reloads = Counter(
            "sidecar_injector_cert_reloads_total", "Serving certificate reload attempts, by result.",
            ["result"], registry=r,
        )
        self.cert_expiry = Gauge(
            "sidecar_injector_serving_cert_expiry_timestamp_seconds",
            "notAfter of the serving certificate in force (Unix time).", registry=r,
            multiprocess_mode="livemin",
        )
        self.ready = Gauge("sidecar_injector_ready", "1 when /readyz answers 200.", registry=r,
                           multiprocess_mode="livemin")
        self.connections = Gauge(
            "sidecar_injector_connections", "Connections holding a slot (TLS handshakes included), by port.",
            ["port"], registry=r, multiprocess_mode="livesum",
        )
        self.connections_refused = Counter(
            "sidecar_injector_connections_refused_total",
            "Connections closed at accept by a connection cap, by port and cap.",
            ["port", "reason"], registry=r,
        )
        self.config_validations = Counter(
            "sidecar_injector_config_validations_total",
            "SidecarConfig objects checked on /validate-config, by result: allowed, denied (the loader "
            "refused the config), invalid (not an AdmissionReview: 400) or error (500).",
            ["result"], registry=r,
        )
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._skips: dict[str, Counter] = {}
        self._failures: dict[str, Counter] = {}
        self._configs: dict[str, Counter] = {}

    def admission(self, operation: str, outcome: str, reason: str, seconds: float | None, code: int = 200,
                  configs: tuple[str, ...] = ()) -> None:
        """Count one /mutate answer. ``reason`` must come from a small fixed set (it is a label).

        ``seconds`` is None for requests refused before they were complete (no admission time);
        ``code`` is the HTTP status answered; ``configs`` the names of the configs injected.
        """
        key = (operation, outcome, code)
        child = self._requests.get(key)
        if child is None:
            # Only known triples are cached: the cache must not grow with what clients send.
            label = _OPERATIONS.get(operation, "other")
            child = self.requests.labels(label, outcome if outcome in _OUTCOMES else "other",
                                         _CODES.get(code, "other"))
            if label != "other":
                self._requests[key] = child
        child.inc()
        if outcome == "injected":
            self.success.inc()
            for name in configs:
                counter = self._configs.get(name)
                if counter is None:
                    counter = self._config_child(name)
                counter.inc()
        elif outcome == "skipped":
            skip = self._skips.get(reason)
            if skip is None:
                skip = self._reason_child(self._skips, self.skip, reason or "unspecified", reason)
            skip.inc()
        else:
            failure = self._failures.get(reason)
            if failure is None:
                failure = self._reason_child(self._failures, self.failure, reason, reason)
            failure.inc()
        if seconds is not None:
            self.duration.observe(seconds)

    @staticmethod
    def _reason_child(cache: dict[str, Counter], metric: Counter, label: str, key: str) -> Counter:
        if len(cache) >= _REASONS_MAX:
            return metric.labels("other")
        child: Counter = metric.labels(label)
        cache[key] = child
        return child

    def _config_child(self, name: str) -> Counter:
        if len(self._configs) >= _CONFIGS_MAX:
            return self.injections.labels("other")
        child: Counter = self.injections.labels(name)
        self._configs[name] = child
        return child

    def refresh(self) -> None:
        """Read the in-flight count (each scrape; each second, for ``--workers``' shared files)."""
        if self.in_flight_source is not None:
            self.in_flight.set(self.in_flight_source())

    def connection_count(self, port: str, count: int) -> None:
        self.connections.labels(port).set(count)

    def connection_refused(self, port: str, reason: str) -> None:
        self.connections_refused.labels(port, reason).inc()

    def config_loaded(self, count: int) -> None:
        self.config_reloads.labels("success").inc()
        self.configs_loaded.set(count)
        self.config_last_success.set(time.time())
        self.config_last_ok.set(1)

    def config_failed(self) -> None:
        self.config_reloads.labels("failure").inc()
        self.config_last_ok.set(0)

    def cert_loaded(self, not_after: float) -> None:
        self.cert_reloads.labels("success").inc()
        self.cert_expiry.set(not_after)

    def cert_failed(self) -> None:
        self.cert_reloads.labels("failure").inc()

    def render(self) -> bytes:
        self.refresh()
        return generate_latest(self.registry)
