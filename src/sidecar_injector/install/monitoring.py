"""Monitoring as code: a metrics Service, a ServiceMonitor and a PrometheusRule (Prometheus Operator).

Pure, like :mod:`sidecar_injector.install.manifests`: options in, dicts out. ``manifests --monitoring``
prints them after the install; ``manifests --kustomize DIR`` writes them as the kustomize
component ``DIR/monitoring/`` (``deploy/monitoring/`` in this repository); the Helm chart renders
the same objects with ``monitoring.enabled=true`` (a test keeps the three equal). Each alert has
a ``promtool test rules`` unit test in ``tests/monitoring/`` that fires it on synthetic series
and keeps it silent on healthy ones.

Every expression selects the injector's own series by ``job`` (the metrics Service's name, which
is what the Prometheus Operator puts in ``job``) and ``namespace``, so two installs in one
cluster do not mix.
"""

from __future__ import annotations

from typing import Any

from sidecar_injector.install.options import ManifestOptions, _meta, _selector
from sidecar_injector.install.workload import METRICS_PORT

__all__ = ["ALERTS", "metrics_service", "prometheus_rule", "render", "service_monitor"]

Manifest = dict[str, Any]

ALERTS = (
    "SidecarInjectorCertificateExpiringSoon",
    "SidecarInjectorInjectionFailures",
    "SidecarInjectorConfigReloadFailing",
    "SidecarInjectorNoReadyReplica",
    "SidecarInjectorAdmissionLatencyHigh",
)


def metrics_service_name(opts: ManifestOptions) -> str:
    return f"{opts.name}-metrics"


def metrics_service(opts: ManifestOptions) -> Manifest:
    """The plain-HTTP metrics port of the webhook pods (the webhook Service exposes only 443)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(opts, metrics_service_name(opts), "metrics"),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(opts, "webhook"),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }


def service_monitor(opts: ManifestOptions) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(opts, opts.name, "metrics"),
        "spec": {
            "selector": {"matchLabels": _selector(opts, "metrics")},
            "namespaceSelector": {"matchNames": [opts.namespace]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}],
        },
    }


def _rules(job: str, namespace: str) -> list[Manifest]:
    sel = f'job="{job}", namespace="{namespace}"'
    return [
        {
            "alert": "SidecarInjectorCertificateExpiringSoon",
            # Renewal runs at a third of the lifetime left (months): a week left means it failed.
            "expr": f"min by (namespace, pod) (sidecar_injector_serving_cert_expiry_timestamp_seconds{{{sel}}})"
                    " - time() < 7 * 24 * 3600",
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The injector's serving certificate expires within 7 days.",
                "description": "Pod {{ $labels.namespace }}/{{ $labels.pod }} serves a certificate that expires in "
                               "{{ $value | humanizeDuration }}; the certificate Job (or cert-manager) has not "
                               "renewed it.",
            },
        },
        {
            "alert": "SidecarInjectorInjectionFailures",
            # Rejected (4xx) and failed (ours) answers over every /mutate request; NaN (silent)
            # without traffic.
            "expr": f"sum(rate(sidecar_injector_injection_failure_total{{{sel}}}[5m]))"
                    f" / sum(rate(sidecar_injector_injection_requests_total{{{sel}}}[5m])) > 0.01",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "More than 1% of admission requests fail.",
                "description": "{{ $value | humanizePercentage }} of /mutate requests were rejected or failed over "
                               "the last 5 minutes: see sidecar_injector_injection_failure_total by reason and "
                               "the server's error log.",
            },
        },
        {
            "alert": "SidecarInjectorConfigReloadFailing",
            "expr": f"min by (namespace, pod) (sidecar_injector_config_last_reload_successful{{{sel}}}) == 0",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "The newest SidecarConfig does not load; the previous one stays in force.",
                "description": "Pod {{ $labels.namespace }}/{{ $labels.pod }} failed to load the changed "
                               "configuration; its log line `config reload failed` names every problem.",
            },
        },
        {
            "alert": "SidecarInjectorNoReadyReplica",
            # No series at all (every pod gone or unscraped) counts as no ready replica.
            "expr": f"(sum(sidecar_injector_ready{{{sel}}}) or vector(0)) < 1",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "No injector replica is ready.",
                "description": "Pods created now get no sidecar (failurePolicy Ignore) or are refused "
                               "(failurePolicy Fail).",
            },
        },
        {
            "alert": "SidecarInjectorAdmissionLatencyHigh",
            "expr": "histogram_quantile(0.99, sum by (le) "
                    f"(rate(sidecar_injector_admission_duration_seconds_bucket{{{sel}}}[5m]))) > 0.1",
            "for": "10m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Admission p99 above 100 ms.",
                "description": "The 99th percentile of /mutate answers is {{ $value | humanizeDuration }} "
                               "(typically well under 1 ms): an overloaded replica or huge pods.",
            },
        },
    ]


def prometheus_rule(opts: ManifestOptions) -> Manifest:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _meta(opts, opts.name, "metrics"),
        "spec": {"groups": [{"name": "sidecar-injector", "rules": _rules(metrics_service_name(opts), opts.namespace)}]},
    }


def render(opts: ManifestOptions) -> list[Manifest]:
    return [metrics_service(opts), service_monitor(opts), prometheus_rule(opts)]
