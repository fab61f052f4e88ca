"""Decide what the webhook's TLS Secret and caBundle should hold: keep, renew, or start afresh.

Pure (PEM bytes in, a plan out), so the in-cluster bootstrap (``certs --apply``) only reads,
asks :func:`plan` and writes what changed, and the decision is unit-testable without a cluster.

The rules:
- The CA is reused while it is valid, matches its key, and has more than a third of its
  lifetime left; otherwise a new CA is made.
- The serving certificate is reused while it is signed by the current CA, matches its key,
  names exactly the wanted DNS names and IPs, and has more than a third of its lifetime left.
- The caBundle is the current CA followed by every other CA already in the bundle that has not
  expired: during a CA change the apiserver trusts both the certificate the pods still serve
  and its replacement, so no call fails while the Secret reaches the pods.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sidecar_injector.install import certs

__all__ = ["SECRET_KEYS", "Plan", "plan"]

# What the Secret holds: the serving pair under the kubernetes.io/tls names, plus the CA (the
# key too, so the next run can renew the serving certificate under the same CA).
SECRET_KEYS = ("tls.crt", "tls.key", "ca.crt", "ca.key")


@dataclass(frozen=True)
class Plan:
    secret_data: dict[str, bytes]
    """The Secret's data after the run (all four keys)."""
    ca_bundle: bytes
    """The caBundle every webhook of the configuration should carry."""
    new_ca: bool
    new_cert: bool
    reasons: list[str] = field(default_factory=list)
    """Why a CA or certificate was (re)issued, for the log."""


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = {str(n) for n in ext.get_values_for_type(x509.DNSName)}
    names |= {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return names


def _key_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    return bool(cert.public_key() == key.public_key())


def _ca_problem(ca_pem: bytes, ca_key: bytes, now: datetime.datetime) -> str | None:
    if not ca_pem.strip() or not ca_key.strip():
        return "no CA in the Secret"
    try:
        cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return "ca.crt is not a PEM certificate"
    if not _key_matches(ca_pem, ca_key):
        return "ca.key does not match ca.crt"
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca.crt is not a CA certificate"
    except x509.ExtensionNotFound:
        return "ca.crt is not a CA certificate"
    if certs.needs_renewal(ca_pem, now=now):
        return f"the CA expires at {cert.not_valid_after_utc.isoformat()} (less than a third left)"
    return None


def _cert_problem(
    cert_pem: bytes, key_pem: bytes, ca_pem: bytes, wanted: set[str], now: datetime.datetime
) -> str | None:
    if not cert_pem.strip() or not key_pem.strip():
        return "no serving certificate in the Secret"
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "tls.crt is not a PEM certificate"
    if not _key_matches(cert_pem, key_pem):
        return "tls.key does not match tls.crt"
    if not certs.signed_by(cert_pem, ca_pem):
        return "tls.crt is not signed by the current CA"
    have = _sans(cert)
    if have != wanted:
        return f"tls.crt names {sorted(have)}, wanted {sorted(wanted)}"
    if certs.needs_renewal(cert_pem, now=now):
        return f"tls.crt expires at {cert.not_valid_after_utc.isoformat()} (less than a third left)"
    return None


def _parse_bundle(bundle: bytes) -> bytes:
    # A caBundle someone pasted by hand may be garbage; it is then replaced, not fatal.
    try:
        certs.bundle_certificates(bundle)
    except certs.CertificateError:
        return b""
    return bundle


def plan(
    secret_data: Mapping[str, bytes],
    current_bundles: Sequence[bytes],
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    ca_common_name: str,
    ca_days: int,
    cert_days: int,
    now: datetime.datetime | None = None,
) -> Plan:
    """What the Secret and the caBundle should hold, given what they hold now."""
    now = now or datetime.datetime.now(datetime.UTC)
    reasons: list[str] = []
    ca_pem = secret_data.get("ca.crt", b"")
    ca_key = secret_data.get("ca.key", b"")
    new_ca = False
    problem = _ca_problem(ca_pem, ca_key, now)
    if problem:
        reasons.append(f"new CA: {problem}")
        ca_pem, ca_key = certs.generate_ca(ca_common_name, ca_days)
        new_ca = True

    wanted = {n.strip().lower().rstrip(".") for n in dns_names}
    for ip in ip_addresses:
        try:
            wanted.add(str(ipaddress.ip_address(ip.strip())))
        except ValueError:
            raise certs.CertificateError(f"not a valid IP address for a certificate: {ip!r}") from None
    tls_crt = secret_data.get("tls.crt", b"")
    tls_key = secret_data.get("tls.key", b"")
    new_cert = False
    problem = _cert_problem(tls_crt, tls_key, ca_pem, wanted, now)
    if problem:
        reasons.append(f"new serving certificate: {problem}")
        tls_crt, tls_key = certs.issue_serving_cert(ca_pem, ca_key, dns_names, ip_addresses, cert_days)
        new_cert = True

    old = [_parse_bundle(b) for b in current_bundles]
    if new_ca:
        # The CA the pods may still be serving under, even if the webhook never carried it.
        old.append(_parse_bundle(secret_data.get("ca.crt", b"")))
    bundle = certs.merge_bundle(ca_pem, *old, now=now)
    return Plan(
        secret_data={"tls.crt": tls_crt, "tls.key": tls_key, "ca.crt": ca_pem, "ca.key": ca_key},
        ca_bundle=bundle,
        new_ca=new_ca,
        new_cert=new_cert,
        reasons=reasons,
    )
