"""``certs --apply``: fill or renew the webhook's TLS Secret and caBundle in a cluster.

The in-cluster job ingress-nginx users know from its certgen, made idempotent and renewing:
read the Secret and the MutatingWebhookConfiguration, ask :func:`rotation.plan` what they
should hold, and write only what differs. A second run with nothing to renew writes nothing.

Order matters during a CA change: the caBundle (old and new CA) is written BEFORE the Secret
holding the certificate signed by the new CA, so the apiserver trusts the new certificate
before any pod can serve it. On the first fill (no CA in the Secret yet, so nothing is being
served) the Secret goes first instead, so that racing runs cannot leave a CA whose key was
never stored in the caBundle.

Both writes are strategic-merge patches that carry the ``resourceVersion`` just read: if
another run (the Job and the CronJob at once) changed the object in between, the apiserver
answers 409 Conflict and the whole read-plan-write cycle starts again with the new state.
The objects are read and patched as plain JSON, never round-tripped through the client's
models, which would drop fields the client does not know.

The requests go through lightkube's configuration and authenticated HTTP client, the client the
server's SidecarConfig watch uses (the full ``kubernetes`` client is 126 MB; README, "SidecarConfig
as a Kubernetes API"): kubeconfig files, exec plugins, in-cluster service-account tokens. Only the
CLI imports this module, lazily.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx
from lightkube.config import client_adapter
from lightkube.config.kubeconfig import KubeConfig
from lightkube.core.exceptions import ConfigError as LightkubeConfigError

from sidecar_injector.core.errors import InjectorError
from sidecar_injector.install import rotation

__all__ = ["BootstrapError", "Result", "apply", "load_client"]

log = logging.getLogger(__name__)
# The HTTP client logs every request at INFO: the Job's log says what changed, not each call.
for _noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

_STRATEGIC = "application/strategic-merge-patch+json"
_FIELD_MANAGER = "sidecar-injector-certs"
_ATTEMPTS = 5


class BootstrapError(InjectorError):
    """The cluster objects cannot be read or written (missing, forbidden, malformed)."""


@dataclass(frozen=True)
class Result:
    secret_updated: bool
    bundle_updated: bool
    plan: rotation.Plan


class ApiException(Exception):
    """A non-2xx answer (``status``, ``body``), or no answer at all (status 0)."""

    def __init__(self, status: int, body: str, reason: str = "") -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.reason = reason


class Client:
    """JSON GET and strategic-merge PATCH of raw objects (never models, which drop unknown fields)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def _send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        content = None
        params = {}
        if body is not None:
            headers["Content-Type"] = _STRATEGIC
            content = json.dumps(body).encode()
            params["fieldManager"] = _FIELD_MANAGER
        try:
            resp = self.http.request(method, path, content=content, headers=headers, params=params)
        except httpx.HTTPError as e:
            raise ApiException(0, "", f"{type(e).__name__}: {e}") from None
        if resp.status_code >= 300:
            raise ApiException(resp.status_code, resp.text, resp.reason_phrase)
        return _json(resp.content)

    def get(self, path: str) -> dict[str, Any]:
        return self._send("GET", path)

    def patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("PATCH", path, body)


def load_client(kubeconfig: str | None = None) -> Client:
    """An API client: from ``kubeconfig`` if given, else in-cluster, else ``$KUBECONFIG`` or the
    default kubeconfig."""
    try:
        if kubeconfig:
            config = KubeConfig.from_file(kubeconfig).get()
        else:
            config = KubeConfig.from_env().get()
        if config is None:
            raise LightkubeConfigError("no current context")
        return Client(client_adapter.Client(config, client_adapter.ConnectionParams()))
    except (LightkubeConfigError, OSError, KeyError, ValueError) as e:
        raise BootstrapError(f"cannot configure a Kubernetes client: {e}") from None


def _write(ref: str, what: str, call: Callable[[], object]) -> None:
    """One conditional write (the body carries the resourceVersion read): a 409 means another
    run wrote first, so the caller starts over from a fresh read."""
    try:
        call()
    except ApiException as e:
        if e.status == 409:
            raise _Conflict(ref) from None
        raise BootstrapError(f"cannot update {what}: {_describe(e)}") from None


def _describe(e: ApiException) -> str:
    if e.status == 0:
        return f"no answer: {e.reason}"
    try:
        message = json.loads(e.body or "{}").get("message") or e.reason
    except (ValueError, AttributeError):
        message = e.reason
    return f"HTTP {e.status}: {message}"


def _json(content: bytes) -> dict[str, Any]:
    try:
        data = json.loads(content)
    except ValueError:
        raise BootstrapError("the API server answered with something other than JSON") from None
    if not isinstance(data, dict):
        raise BootstrapError("the API server answered with something other than an object")
    return data


def _b64decode(value: Any, what: str) -> bytes:
    if not value:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise BootstrapError(f"{what} is not base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class _Conflict(Exception):
    """Someone else changed the object between our read and our write: start again."""


def apply(
    client: Client,
    *,
    namespace: str,
    service: str,
    secret: str,
    webhook_config: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    ca_days: int,
    cert_days: int,
) -> Result:
    """Make the Secret and the webhook configuration's caBundle valid; return what changed."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            return _apply_once(
                client,
                namespace=namespace,
                service=service,
                secret=secret,
                webhook_config=webhook_config,
                dns_names=dns_names,
                ip_addresses=ip_addresses,
                ca_days=ca_days,
                cert_days=cert_days,
            )
        except _Conflict as e:
            log.info("conflict (%s), retrying (attempt %d of %d)", e, attempt, _ATTEMPTS)
    raise BootstrapError(f"gave up after {_ATTEMPTS} conflicting updates; is another job fighting this one?")


def _apply_once(
    client: Client,
    *,
    namespace: str,
    service: str,
    secret: str,
    webhook_config: str,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    ca_days: int,
    cert_days: int,
) -> Result:
    secret_path = f"/api/v1/namespaces/{namespace}/secrets/{secret}"
    webhooks_path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/" + webhook_config
    validating_path = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/" + webhook_config
    secret_ref = f"Secret {namespace}/{secret}"
    webhook_ref = f"MutatingWebhookConfiguration {webhook_config}"

    try:
        secret_obj = client.get(secret_path)
    except ApiException as e:
        if e.status == 404:
            raise BootstrapError(
                f"{secret_ref} does not exist; apply the manifests first (they create it empty, "
                "so this job needs no right to create Secrets)"
            ) from None
        raise BootstrapError(f"cannot read {secret_ref}: {_describe(e)}") from None
    try:
        webhook_obj = client.get(webhooks_path)
    except ApiException as e:
        if e.status == 404:
            raise BootstrapError(f"{webhook_ref} does not exist; apply the manifests first") from None
        raise BootstrapError(f"cannot read {webhook_ref}: {_describe(e)}") from None

    # Opaque is what the manifests create (see certmanifests.tls_secret); kubernetes.io/tls is
    # what a user may have made by hand. Both hold the same keys.
    if secret_obj.get("type", "Opaque") not in ("Opaque", "kubernetes.io/tls"):
        raise BootstrapError(
            f"{secret_ref} has type {secret_obj.get('type')!r}, expected Opaque or kubernetes.io/tls "
            "(the type cannot be changed: delete the Secret and apply the manifests again)"
        )
    raw = secret_obj.get("data") or {}
    current = {k: _b64decode(raw.get(k), f"{secret_ref} key {k}") for k in rotation.SECRET_KEYS}
    webhooks = webhook_obj.get("webhooks") or []
    if not webhooks:
        raise BootstrapError(f"{webhook_ref} has no webhooks to give a caBundle")
    bundles = [_b64decode((w.get("clientConfig") or {}).get("caBundle"), f"{webhook_ref} caBundle") for w in webhooks]

    the_plan = rotation.plan(
        current,
        bundles,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        ca_common_name=f"{service}.{namespace} webhook CA",
        ca_days=ca_days,
        cert_days=cert_days,
    )
    for reason in the_plan.reasons:
        log.info("%s", reason)

    bundle_updated = any(b != the_plan.ca_bundle for b in bundles)
    # The ValidatingWebhookConfiguration of the same name (SidecarConfig objects), when installed,
    # gets the same caBundle, written with the mutating one.
    validating_ref = f"ValidatingWebhookConfiguration {webhook_config}"
    try:
        validating_obj: dict[str, Any] | None = client.get(validating_path)
    except ApiException as e:
        if e.status not in (403, 404):  # 403: an older install's RBAC, which has no such object
            raise BootstrapError(f"cannot read {validating_ref}: {_describe(e)}") from None
        validating_obj = None
    validating_hooks = (validating_obj or {}).get("webhooks") or []
    validating_updated = any(
        _b64decode((w.get("clientConfig") or {}).get("caBundle"), f"{validating_ref} caBundle") != the_plan.ca_bundle
        for w in validating_hooks)
    secret_updated = any(current[k] != the_plan.secret_data[k] for k in rotation.SECRET_KEYS)

    def write_validating_bundle() -> None:
        assert validating_obj is not None
        body = {
            "metadata": {"resourceVersion": validating_obj["metadata"]["resourceVersion"]},
            "webhooks": [{"name": w["name"], "clientConfig": {"caBundle": _b64(the_plan.ca_bundle)}}
                         for w in validating_hooks],
        }
        _write(validating_ref, f"the caBundle of {validating_ref}",
               lambda: client.patch(validating_path, body))
        log.info("updated the caBundle of %s", validating_ref)

    def write_bundle() -> None:
        if validating_updated:
            write_validating_bundle()
        if not bundle_updated:
            return
        body = {
            "metadata": {"resourceVersion": webhook_obj["metadata"]["resourceVersion"]},
            # webhooks merge by name in a strategic-merge patch: only caBundle changes.
            "webhooks": [{"name": w["name"], "clientConfig": {"caBundle": _b64(the_plan.ca_bundle)}} for w in webhooks],
        }
        _write(webhook_ref, f"the caBundle of {webhook_ref}", lambda: client.patch(webhooks_path, body))
        log.info("updated the caBundle of %s (%d CA certificate(s))", webhook_ref, _count(the_plan.ca_bundle))

    def write_secret() -> None:
        body = {
            "metadata": {"resourceVersion": secret_obj["metadata"]["resourceVersion"]},
            "data": {k: _b64(v) for k, v in the_plan.secret_data.items()},
        }
        _write(secret_ref, secret_ref, lambda: client.patch(secret_path, body))
        log.info("updated %s", secret_ref)

    writes = []
    if bundle_updated or validating_updated:
        writes.append(write_bundle)
    if secret_updated:
        writes.append(write_secret)
    if not current["ca.crt"].strip():
        # First fill: no pod can be serving a certificate yet, so the Secret goes first. When
        # runs race, the losers' Secret write then fails (409) before they put a CA whose key
        # is never stored into the caBundle; they re-read and adopt the winner's CA.
        writes.reverse()
    # Otherwise the bundle goes first: see the module docstring.
    for write in writes:
        write()
    return Result(secret_updated=secret_updated, bundle_updated=bundle_updated, plan=the_plan)


def _count(bundle: bytes) -> int:
    return bundle.count(b"-----BEGIN CERTIFICATE-----")
