"""AdmissionReview in, AdmissionReview out: the webhook's whole job, as bytes to bytes.

The server and ``sidecar-injector review`` call :func:`review`, so what the CLI prints is
exactly what the webhook sends. Two error channels (as in kopf):

- a request that is not a usable AdmissionReview is the client's fault: :class:`InvalidReview`,
  which the server turns into HTTP 400 with the message;
- a failure while injecting one pod (a template, a bug) is ours: answered per ``on_error``:
  ``fail`` -> HTTP 500 (the webhook's failurePolicy decides), ``allow`` -> admitted without
  a patch and with a warning, ``deny`` -> ``allowed: false`` (rejected whatever the policy).
"""

from __future__ import annotations

import base64
from typing import Any, Literal, NamedTuple

import orjson

from sidecar_injector.core import skeleton
from sidecar_injector.core.config import ConfigSet
from sidecar_injector.core.errors import InjectionError, InputError, InvalidReview
from sidecar_injector.core.inject import InjectionResult, inject

OnError = Literal["fail", "allow", "deny"]
API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")

# The apiserver may truncate a warning over 256 characters and drops warnings past 4096 in
# total; keep ours within both, and say who speaks.
_WARNING_PREFIX = "sidecar-injector: "
_WARNING_MAX = 256
_WARNINGS_TOTAL = 3072


class ReviewResult(NamedTuple):
    """What to send back, plus what the server logs and counts (a NamedTuple: one per request)."""

    status: int
    body: bytes
    uid: str
    namespace: str
    pod: str
    """``metadata.name``, else ``generateName`` (controllers' pods have no name yet)."""
    operation: str
    outcome: Literal["injected", "skipped", "error"]
    reason: str
    injected: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    patch: bytes = b""
    """The JSON Patch (not base64), empty when none: for ``review --decode`` and tests."""


def _warnings(messages: tuple[str, ...] | list[str]) -> list[str]:
    out: list[str] = []
    total = 0
    for m in messages:
        w = _WARNING_PREFIX + m
        if len(w) > _WARNING_MAX:
            w = w[: _WARNING_MAX - 3] + "..."
        total += len(w)
        if total > _WARNINGS_TOTAL:
            break
        out.append(w)
    return out


def _pod_name(obj: Any, request: dict[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if isinstance(meta, dict):
        for key in ("name", "generateName"):
            if isinstance(meta.get(key), str) and meta[key]:
                return str(meta[key])
    name = request.get("name")
    return name if isinstance(name, str) else ""


def _is_pod(request: dict[str, Any]) -> bool:
    kind = request.get("kind")
    resource = request.get("resource")
    return (
        isinstance(kind, dict)
        and kind.get("kind") == "Pod"
        and kind.get("group", "") == ""
        and (not isinstance(resource, dict) or resource.get("resource", "pods") == "pods")
        and not request.get("subResource")
    )


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """Return ``(apiVersion, request)`` or raise :class:`InvalidReview` with a one-line reason."""
    if not body:
        raise InvalidReview("empty request body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidReview(f"request body is not JSON: {e}") from None
    return _check(doc)


def _check(doc: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InvalidReview("request body is not a JSON object")
    api_version = doc.get("apiVersion")
    if doc.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise InvalidReview(
            f"not an AdmissionReview (apiVersion {api_version!r}, kind {doc.get('kind')!r}); "
            "expected admission.k8s.io/v1 or v1beta1"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise InvalidReview("AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("AdmissionReview request.uid is missing")
    return str(api_version), request


def _body(api_version: str, response: dict[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})


def review(body: bytes, configs: ConfigSet, *, on_error: OnError = "fail") -> ReviewResult:
    """Answer one AdmissionReview. Raises :class:`InvalidReview` for the client's mistakes."""
    doc = None if configs.has_templates else skeleton.decode(body)
    api_version, request = parse(body) if doc is None else _check(doc)
    uid: str = request["uid"]
    operation = request.get("operation")
    operation = operation if isinstance(operation, str) else ""
    obj = request.get("object")
    namespace = request.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        # Before 1.24 the object's namespace could be blank; the request's is authoritative,
        # the object's a fallback for hand-made reviews.
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        namespace = namespace if isinstance(namespace, str) and namespace else "default"
    pod = _pod_name(obj, request)

    def skipped(reason: str) -> ReviewResult:
        return ReviewResult(
            200, _body(api_version, {"uid": uid, "allowed": True}), uid, namespace, pod, operation,
            "skipped", reason,
        )

    if operation != "CREATE":
        return skipped("not-create")
    if not _is_pod(request):
        return skipped("not-a-pod")
    if not isinstance(obj, dict):
        raise InvalidReview("request.object is missing or not an object")
    try:
        result = inject(obj, namespace, configs)
    except InputError as e:
        raise InvalidReview(f"request.object: {e}") from None
    except InjectionError as e:
        return _failed(api_version, uid, namespace, pod, operation, str(e), on_error)
    except Exception as e:  # a bug must not take the server down; the failure mode decides
        reason = f"internal error: {type(e).__name__}: {e}"
        return _failed(api_version, uid, namespace, pod, operation, reason, on_error)
    return _answer(api_version, uid, namespace, pod, operation, result)


def _answer(
    api_version: str, uid: str, namespace: str, pod: str, operation: str, result: InjectionResult
) -> ReviewResult:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    patch = b""
    if result.patch:
        patch = orjson.dumps(result.patch)
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode()
    warnings = _warnings(result.warnings)
    if warnings:
        response["warnings"] = warnings
    outcome: Literal["injected", "skipped"] = "injected" if result.patch else "skipped"
    return ReviewResult(
        200, _body(api_version, response), uid, namespace, pod, operation, outcome,
        result.skip_reason if not result.patch else "", result.injected, tuple(warnings), patch,
    )


def _failed(
    api_version: str, uid: str, namespace: str, pod: str, operation: str, reason: str, on_error: OnError
) -> ReviewResult:
    if on_error == "allow":
        response = {
            "uid": uid,
            "allowed": True,
            "warnings": _warnings([f"injection failed, pod admitted without sidecars: {reason}"]),
        }
        return ReviewResult(200, _body(api_version, response), uid, namespace, pod, operation, "error", reason)
    if on_error == "deny":
        response = {
            "uid": uid,
            "allowed": False,
            "status": {"status": "Failure", "code": 500, "reason": "InternalError",
                       "message": f"sidecar injection failed: {reason}"},
        }
        return ReviewResult(200, _body(api_version, response), uid, namespace, pod, operation, "error", reason)
    # fail: an HTTP error makes this a call error, which the webhook's failurePolicy governs.
    status = {"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 500,
              "reason": "InternalError", "message": f"sidecar injection failed: {reason}"}
    return ReviewResult(500, orjson.dumps(status), uid, namespace, pod, operation, "error", reason)
