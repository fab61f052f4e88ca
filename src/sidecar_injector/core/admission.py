"""AdmissionReview in, AdmissionReview out: the webhook's whole job, as bytes to bytes.

The server and ``sidecar-injector review`` call :func:`review`, so what the CLI prints is
exactly what the webhook sends. Two error channels (as in kopf):

- a request that is not a usable AdmissionReview, or whose pod is not usable (a field
  injection reads has the wrong type: :mod:`core.podshape`), is the client's fault:
  :class:`InvalidReview`, which the server turns into HTTP 400 with the message, whatever
  the config and ``on_error``;
- a failure while injecting one pod (a template, a bug) is ours: answered per ``on_error``:
  ``fail`` -> HTTP 500 (the webhook's failurePolicy decides), ``allow`` -> admitted without
  a patch and with a warning, ``deny`` -> ``allowed: false`` (rejected whatever the policy).
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any, Literal, NamedTuple

import orjson

from sidecar_injector.core import podshape, skeleton
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

UID_MAX = 256
"""Longest ``request.uid`` accepted. Kubernetes UIDs are 36-character UUIDs; the uid is echoed
in the answer and logged, so an unbounded one would be N bytes in, N bytes of log."""
DEPTH_MAX = 1024
"""Deepest JSON nesting accepted: orjson's own limit, which every path keeps (the partial
decode gives up earlier, at msgspec's recursion limit, and leaves those to the full one)."""
_SHOWN = 60
"""How much of a client's string an error message quotes."""


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


def _show(value: Any) -> str:
    """A client's value in an error message: a clipped quoted string, or only its type.

    Never ``repr()`` of a structure: a ``kind`` nested 1,000 deep made that a RecursionError
    (and a 500), and a 5 MB one a 5 MB message.
    """
    if isinstance(value, str):
        return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "...")
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"a {type(value).__name__}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _lenient_int(text: str) -> int | float:
    # As orjson reads integers past 64 bits: as floats (and no quadratic int() of a long text).
    return int(text) if len(text) < 19 else float(text)


def _usable(doc: Any) -> bool:
    """True if ``doc`` is nested at most :data:`DEPTH_MAX` deep and every string (and key) is
    encodable: orjson refuses both, the standard library's parser neither (a lone ``\\ud800``)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                return False
        elif isinstance(value, (dict, list)):
            if depth > DEPTH_MAX:
                return False
            if isinstance(value, dict):
                stack.extend((k, depth) for k in value)
                value = value.values()
            stack.extend((v, depth + 1) for v in value)
    return True


def _lenient_loads(body: bytes) -> Any:
    """The document, reading numbers outside a double's range as ±inf; None if not JSON.

    Why: the partial decode (:mod:`core.skeleton`) skips the fields injection does not read
    without checking their numbers' range, and a field nobody reads cannot make a pod
    unusable. So that the full path answers alike, it accepts them too, under orjson's other
    rules (depth, surrogates). Only reached when orjson refused a number as out of range:
    rare, and bounded by the body limit.
    """
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + DEPTH_MAX + 100)  # the parser recurses once per level
    try:
        doc = json.loads(body.decode(), parse_int=_lenient_int, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    finally:
        sys.setrecursionlimit(limit)
    return doc if _usable(doc) else None


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """Return ``(apiVersion, request)`` or raise :class:`InvalidReview` with a one-line reason."""
    if not body:
        raise InvalidReview("empty request body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        message = str(e)
        if message.startswith("number is infinity"):
            doc = _lenient_loads(body)
            if doc is not None:
                return _check(doc)
        if message.startswith("depth limit exceeded"):
            raise InvalidReview(f"request body is nested more than {DEPTH_MAX} levels deep") from None
        raise InvalidReview(f"request body is not JSON: {message}") from None
    return _check(doc)


def _check(doc: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InvalidReview("request body is not a JSON object")
    api_version = doc.get("apiVersion")
    if doc.get("kind") != "AdmissionReview" or api_version not in API_VERSIONS:
        raise InvalidReview(
            f"not an AdmissionReview (apiVersion {_show(api_version)}, kind {_show(doc.get('kind'))}); "
            "expected admission.k8s.io/v1 or v1beta1"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise InvalidReview("AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise InvalidReview("AdmissionReview request.uid is missing")
    if len(uid) > UID_MAX:
        raise InvalidReview(f"AdmissionReview request.uid is longer than {UID_MAX} characters")
    return str(api_version), request


def _body(api_version: str, response: dict[str, Any]) -> bytes:
    return orjson.dumps({"apiVersion": api_version, "kind": "AdmissionReview", "response": response})


MEMO_ENTRIES = 256
"""Answers remembered per config set by default (see :func:`review`); the oldest goes first."""
MEMO_BODY_MAX = 64 * 1024
"""Reviews larger than this are not remembered: the memo's size stays bounded (about
``MEMO_ENTRIES`` times the skeleton of such a pod and its patch: about 2.5 KB per entry for
the bench's 5.6 KB review, 640 KB in all; 16 MiB of keys at the very worst)."""
_NAME_KEYS = frozenset({"name", "generateName", "namespace"})


class _Prepared(NamedTuple):
    """The part of an answer that depends only on the pod and the configs (not the uid)."""

    response: dict[str, Any]
    """``allowed`` and, when there is one, the patch and the warnings; the uid is added per request."""
    outcome: Literal["injected", "skipped"]
    reason: str
    injected: tuple[str, ...]
    warnings: tuple[str, ...]
    patch: bytes


def _memo_key(namespace: str, obj: dict[str, Any]) -> bytes | None:
    """The skeleton pod as bytes, without its name: what a template-free decision depends on.

    Pods of one ReplicaSet, Job or DaemonSet arrive byte-identical but for the review's uid
    (the apiserver sets ``name`` from ``generateName`` after admission), so a rollout or a
    scale-up is answered once and then looked up. The name never matters without templates
    (the memo is used only then), so StatefulSet pods share an answer too.
    """
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    trimmed = {**obj, "metadata": {k: v for k, v in meta.items() if k not in _NAME_KEYS}}
    return namespace.encode() + b"\0" + skeleton.encode(trimmed)


def review(
    body: bytes, configs: ConfigSet, *, on_error: OnError = "fail", memo: int = MEMO_ENTRIES
) -> ReviewResult:
    """Answer one AdmissionReview. Raises :class:`InvalidReview` for the client's mistakes.

    ``memo``: remember up to this many answers to template-free pods by their skeleton (what
    injection reads, less the name) in ``configs.memo``, and answer the same pod again by
    lookup (0: never).
    Only when every config is template-free and without matchConditions (the skeleton then
    holds everything the decision reads) and only answers, never errors, are remembered.
    """
    doc = None if configs.review_full_pod else skeleton.decode(body)
    # A sidecar the pod declares is merged field by field: that needs its fields. Whether the
    # metadata was empty is recorded (for uninject), and the skeleton drops keys.
    if doc is not None and not skeleton.stands_for_pod(doc, configs.review_sidecar_names):
        doc = None
    full = doc is None
    api_version, request = parse(body) if full else _check(doc)
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
    # One memo for the whole set, namespaces included (the key holds the namespace, which
    # picks the scoped set): its bound is then one bound, however many namespaces have configs.
    remembered = configs.memo
    configs = configs.for_namespace(namespace)  # namespaced SidecarConfigs (core.tenancy)

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
    key = _memo_key(namespace, obj) if memo and not full and len(body) <= MEMO_BODY_MAX else None
    if key is not None:
        prepared = remembered.get(key)
        if prepared is not None:
            return _answer(api_version, uid, namespace, pod, operation, prepared)
    try:
        if full:  # a skeleton has the shape by construction (its msgspec types are the rules)
            podshape.check(obj)
        result = inject(obj, namespace, configs, patch_only=True, shape_checked=True)
    except InputError as e:
        raise InvalidReview(f"request.object: {e}") from None
    except InjectionError as e:
        return _failed(api_version, uid, namespace, pod, operation, str(e), on_error)
    except Exception as e:  # a bug must not take the server down; the failure mode decides
        reason = f"internal error: {type(e).__name__}: {e}"
        return _failed(api_version, uid, namespace, pod, operation, reason, on_error)
    prepared = _prepare(result)
    if key is not None:
        cache = remembered
        if len(cache) >= memo:
            try:
                del cache[next(iter(cache))]
            except (KeyError, RuntimeError, StopIteration):  # emptied meanwhile: nothing to drop
                pass
        cache[key] = prepared
    return _answer(api_version, uid, namespace, pod, operation, prepared)


def _prepare(result: InjectionResult) -> _Prepared:
    response: dict[str, Any] = {"allowed": True}
    patch = b""
    if result.patch:
        patch = orjson.dumps(result.patch)
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(patch).decode()
    warnings = _warnings(result.warnings) if result.warnings else []
    if warnings:
        response["warnings"] = warnings
    outcome: Literal["injected", "skipped"] = "injected" if result.patch else "skipped"
    reason = result.skip_reason if not result.patch else ""
    return _Prepared(response, outcome, reason, result.injected, tuple(warnings), patch)


def _answer(
    api_version: str, uid: str, namespace: str, pod: str, operation: str, prepared: _Prepared
) -> ReviewResult:
    response = {"uid": uid, **prepared.response}
    return ReviewResult(
        200, _body(api_version, response), uid, namespace, pod, operation, prepared.outcome,
        prepared.reason, prepared.injected, prepared.warnings, prepared.patch,
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
