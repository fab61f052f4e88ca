"""``POST /validate-config``: the validating webhook of ClusterSidecarConfig and SidecarConfig.

It runs exactly the loader's validation (:func:`sidecar_injector.config.apiconfig.validation_review`:
the Pod schema, the apiserver's rules, typed templates, CEL), so a broken SidecarConfig is
refused by ``kubectl apply`` with the file-free version of the loader's message. Validation
takes milliseconds (schema and CEL compilation), on the event loop: these calls are rare (a
human applying a config), unlike ``/mutate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sidecar_injector.config.apiconfig import validation_review
from sidecar_injector.config.schema import pod_schema
from sidecar_injector.core.errors import InjectorError
from sidecar_injector.server.app import status_body
from sidecar_injector.server.http import Request, Response
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics

__all__ = ["config_webhook"]


def config_webhook(kube_version: str, metrics: Metrics, log: JsonLog) -> Callable[[Request], Response]:
    def handle(request: Request) -> Response:
        if request.method != b"POST":
            return Response(405, status_body(405, "use POST"), headers=((b"Allow", b"POST"),))
        start = time.perf_counter()
        try:
            body = validation_review(request.body, schema=pod_schema(kube_version))
        except (ValueError, TypeError) as e:
            metrics.config_validations.labels("invalid").inc()
            return Response(400, status_body(400, f"invalid AdmissionReview: {e}"[:1000]))
        except InjectorError as e:
            metrics.config_validations.labels("error").inc()
            return Response(500, status_body(500, str(e)[:1000]))
        elapsed = time.perf_counter() - start
        allowed = b'"allowed":true' in body
        metrics.config_validations.labels("allowed" if allowed else "denied").inc()
        log.info("config validation", allowed=allowed, duration_ms=round(elapsed * 1000, 3))
        return Response(200, body)

    return handle
