"""The webhook's routes: ``/mutate`` on the TLS port, probes on both ports, ``/metrics``.

``/mutate`` hands the body to :func:`sidecar_injector.core.admission.review`, the same call
``sidecar-injector review`` makes, and only adds what HTTP needs: the Content-Type check,
the mapping of :class:`InvalidReview` to 400, a metric and a log line per request.
A 4xx answer is a ``metav1.Status`` JSON whose ``message`` is one line: client-go shows that
message in the apiserver's error, and curl users read it as is.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from sidecar_injector.core.admission import MEMO_ENTRIES, OnError, review
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InvalidReview
from sidecar_injector.server.http import Request, Response, text_response
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import CONTENT_TYPE, Metrics

__all__ = ["State", "WebhookApp", "status_body"]

_STATUS_REASONS = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed", 500: "InternalError"}


def status_body(code: int, message: str) -> bytes:
    """A ``metav1.Status`` failure, as client-go decodes it from a non-2xx webhook answer."""
    return orjson.dumps({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
        "reason": _STATUS_REASONS.get(code, "Unknown"), "message": message,
    })


def _is_json(content_type: bytes | None) -> bool:
    # "application/json", any case, parameters such as "; charset=utf-8" allowed.
    return content_type is not None and content_type.split(b";", 1)[0].strip().lower() == b"application/json"


@dataclass(slots=True)
class State:
    """What the routes read and the reloaders and shutdown write."""

    configs: ConfigSet
    draining: bool = False
    loaded: bool = True
    """False until the first full list of SidecarConfig objects (``--config-source kubernetes``)."""

    @property
    def ready(self) -> bool:
        # Configs and the certificate are loaded before the listeners open (file configs), so
        # readiness is lost only while shutting down, or missing until the API's configs loaded.
        return self.loaded and not self.draining


_FIELD_MAX = 253
"""Longest request-supplied string written to a log line (a pod name's own limit): the
request's fields are the client's, and N bytes in must not become N bytes of log."""


def _clip(value: str, limit: int = _FIELD_MAX) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


_PROTOCOL_REASONS = {408: "request-timeout", 413: "body-too-large", 431: "headers-too-large", 503: "server-busy"}
_OK = text_response(200, "ok")
_NOT_READY = text_response(503, "shutting down")
_ALLOW_POST = ((b"Allow", b"POST"),)
_ALLOW_GET = ((b"Allow", b"GET, HEAD"),)


class WebhookApp:
    def __init__(
        self, state: State, metrics: Metrics, log: JsonLog, on_error: OnError = "fail", memo: int = MEMO_ENTRIES
    ) -> None:
        self.state = state
        self.memo = memo
        self.metrics = metrics
        self.log = log
        self.on_error = on_error
        self.config_webhook: Callable[[Request], Response] | None = None
        """``/validate-config``: the validating webhook of SidecarConfig objects (server.configwebhook)."""

    # routers, one per port

    def webhook(self, request: Request) -> Response:
        if request.path == b"/mutate":
            return self.mutate(request)
        if request.path == b"/validate-config" and self.config_webhook is not None:
            return self.config_webhook(request)
        return self._common(request)

    def admin(self, request: Request) -> Response:
        if request.path == b"/metrics":
            if request.method not in (b"GET", b"HEAD"):
                return text_response(405, "use GET", _ALLOW_GET)
            return Response(200, self.metrics.render(), CONTENT_TYPE)
        return self._common(request)

    def _common(self, request: Request) -> Response:
        path = request.path
        if path not in (b"/healthz", b"/readyz"):
            return text_response(404, f"no such path: {path.decode('latin-1')[:200]}")
        if request.method not in (b"GET", b"HEAD"):
            return text_response(405, "use GET", _ALLOW_GET)
        if path == b"/readyz" and not self.state.ready:
            return _NOT_READY
        return _OK

    # the admission endpoint

    def mutate(self, request: Request) -> Response:
        start = time.perf_counter()
        if request.method != b"POST":
            return Response(405, status_body(405, "use POST"), headers=_ALLOW_POST)
        if not _is_json(request.content_type):
            got = "none" if request.content_type is None else request.content_type.decode("latin-1")[:100]
            return self._reject(start, "content-type", f"Content-Type must be application/json, got {got}")
        # No cyclic garbage collection during a review: it makes no cycles (its objects are
        # freed by reference counting), but a large one allocates enough to set off full
        # collections that walk every object it holds: 0.51 s of CPU for a 2.3 MB review of
        # 21,000 containers with the collector on, 0.19 s without (docs/server.md, "Limits").
        collecting = gc.isenabled()
        gc.disable()
        try:
            result = review(request.body, self.state.configs, on_error=self.on_error, memo=self.memo)
        except InvalidReview as e:
            return self._reject(start, "invalid-review", str(e))
        except Exception as e:  # a bug in our code must cost one request, not the server
            return self._error(start, e)
        finally:
            if collecting:
                gc.enable()
        elapsed = time.perf_counter() - start
        reason = result.reason if result.outcome == "skipped" else "injection-error"
        self.metrics.admission(result.operation, result.outcome, reason, elapsed, result.status, result.injected)
        log = self.log
        if log.enabled("info"):
            fields: dict[str, object] = {
                "uid": result.uid, "namespace": _clip(result.namespace), "pod": _clip(result.pod),
                "operation": _clip(result.operation), "outcome": result.outcome,
                "configs": result.injected, "status": result.status,
                "duration_ms": round(elapsed * 1000, 3),
            }
            if result.reason:
                fields["reason"] = _clip(result.reason, 1000)
            if result.warnings:
                fields["warnings"] = result.warnings
            log.record("error" if result.outcome == "error" else "info", "admission", fields)
        elif result.outcome == "error":
            log.error("admission", uid=result.uid, namespace=_clip(result.namespace), pod=_clip(result.pod),
                      outcome=result.outcome, reason=_clip(result.reason, 1000), status=result.status)
        return Response(result.status, result.body)

    def protocol_rejected(self, status: int, message: str) -> None:
        """Count and log a request the HTTP layer refused before any route saw it."""
        reason = _PROTOCOL_REASONS.get(status, "malformed-http")
        self.metrics.admission("", "rejected", reason, None, status)
        self.log.info("request rejected", outcome="rejected", reason=reason, message=message, status=status)

    def _reject(self, start: float, reason: str, message: str) -> Response:
        # One line: the message may quote the client's input (a JSON error with its position).
        message = " ".join(message.split())
        if len(message) > 1000:
            message = message[:1000] + "..."
        elapsed = time.perf_counter() - start
        self.metrics.admission("", "rejected", reason, elapsed, 400)
        self.log.info("admission rejected", outcome="rejected", reason=reason, message=message,
                      status=400, duration_ms=round(elapsed * 1000, 3))
        return Response(400, status_body(400, message))

    def _error(self, start: float, exc: Exception) -> Response:
        elapsed = time.perf_counter() - start
        self.metrics.admission("", "error", "internal-error", elapsed, 500)
        message = f"internal error: {type(exc).__name__}: {exc}"
        self.log.error("admission failed", outcome="error", reason="internal-error", message=message,
                       status=500, duration_ms=round(elapsed * 1000, 3))
        return Response(500, status_body(500, " ".join(message.split())))
