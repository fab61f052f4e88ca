"""Certificates for the webhook's TLS: a CA, a serving certificate, renewal and the caBundle.

Pure: PEM bytes in, PEM bytes out, no files and no Kubernetes client, so the server can make a
self-signed certificate at start and the CLI and the in-cluster bootstrap share one code path.

Why the choices:
- Every serving certificate carries its names as subjectAltName entries. kube-apiserver is built
  with Go >= 1.15, which ignores the Common Name ("x509: certificate relies on legacy Common
  Name field"), so a CN-only certificate makes every webhook call fail.
- ECDSA P-256 keys: fast to generate (the server may make one at start), accepted by Go's and
  OpenSSL's TLS stacks, and small enough for a Secret and a caBundle.
- ``not_valid_before`` is set a few minutes in the past so a node whose clock lags slightly
  behind does not see a "not yet valid" certificate right after issuing.
- A serving certificate never outlives its CA: Go checks the validity of every certificate in
  the chain, so the later part of a longer lifetime would be useless and misleading.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sidecar_injector.core.errors import InjectorError

__all__ = [
    "CertificateError",
    "bundle_certificates",
    "generate_ca",
    "issue_serving_cert",
    "merge_bundle",
    "needs_renewal",
    "not_valid_after",
    "service_dns_names",
    "signed_by",
]

# How far back ``not_valid_before`` is set, for clock skew between machines.
_BACKDATE = datetime.timedelta(minutes=5)

# RFC 1123 labels, lower case as Kubernetes names are; a leading "*." allows a wildcard.
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^(\*\.)?{_DNS_LABEL}(\.{_DNS_LABEL})*$")


class CertificateError(InjectorError):
    """A certificate or key cannot be made or read (bad PEM, bad name, bad lifetime)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _check_days(days: int, what: str) -> None:
    # bool is an int subclass; `days=True` is a bug, not one day.
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise CertificateError(f"{what} lifetime must be a whole number of days >= 1, got {days!r}")
    if days > 36500:
        raise CertificateError(f"{what} lifetime of {days} days is beyond 100 years; choose a shorter one")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{what} is not a PEM certificate: {e}") from None


def _load_key(pem: bytes, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"{what} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        # Only ECDSA is issued here; an RSA CA from elsewhere would need another signing path.
        raise CertificateError(f"{what} is a {type(key).__name__}, expected an ECDSA key")
    return key


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """ECDSA keys sign: a CA signs certificates and CRLs, a serving certificate only handshakes."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def generate_ca(common_name: str, days: int) -> tuple[bytes, bytes]:
    """Make a self-signed CA. Returns (certificate PEM, private key PEM).

    The CA may sign end-entity certificates only (path length 0): it exists to sign this
    webhook's serving certificate and nothing else.
    """
    if not isinstance(common_name, str) or not common_name.strip():
        raise CertificateError("CA common name must be a non-empty string")
    _check_days(days, "CA")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _san_entries(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(dns_names, str) or isinstance(ip_addresses, str):
        # A bare string is a sequence of one-letter names: always a caller's mistake.
        raise CertificateError("dns_names and ip_addresses must be lists of strings, not a string")
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in dns_names:
        name = raw.strip().lower().rstrip(".") if isinstance(raw, str) else raw
        if not isinstance(name, str) or not _DNS_NAME.match(name) or len(name) > 253:
            raise CertificateError(f"not a valid DNS name for a certificate: {raw!r}")
        if name not in seen:
            seen.add(name)
            entries.append(x509.DNSName(name))
    for raw in ip_addresses:
        try:
            ip = ipaddress.ip_address(raw.strip() if isinstance(raw, str) else raw)
        except ValueError:
            raise CertificateError(f"not a valid IP address for a certificate: {raw!r}") from None
        if ip.is_unspecified:
            # 0.0.0.0 / :: is a listen address, never the address a client dials.
            raise CertificateError(f"{raw!r} is the unspecified address; give the address clients connect to")
        if str(ip) not in seen:
            seen.add(str(ip))
            entries.append(x509.IPAddress(ip))
    if not entries:
        raise CertificateError("a serving certificate needs at least one DNS name or IP address")
    return entries


def issue_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    days: int = 365,
) -> tuple[bytes, bytes]:
    """Sign a TLS server certificate for ``dns_names`` and ``ip_addresses`` with the CA.

    Returns (certificate PEM, private key PEM). The first name is also the Common Name, for
    humans reading ``openssl x509 -text``; clients check only the subjectAltName entries.
    """
    _check_days(days, "serving certificate")
    ca_cert = _load_cert(ca_cert_pem, "CA certificate")
    ca_key = _load_key(ca_key_pem, "CA key")
    if ca_cert.public_key() != ca_key.public_key():
        raise CertificateError("the CA key does not belong to the CA certificate")
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertificateError("the CA certificate is not a CA (basicConstraints CA:TRUE is missing)")
    entries = _san_entries(dns_names, ip_addresses)
    now = _now()
    ca_end = ca_cert.not_valid_after_utc
    if ca_end <= now:
        raise CertificateError(f"the CA expired at {ca_end.isoformat()}; make a new CA")
    end = min(now + datetime.timedelta(days=days), ca_end)
    first = entries[0].value
    common_name = str(first)[:64]  # the CN attribute is limited to 64 characters
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(entries), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names a certificate for a Service needs, the one the apiserver checks first.

    kube-apiserver dials ``https://NAME.NS.svc`` and verifies that name; the others serve
    clients inside the cluster that use the short or fully-qualified forms.
    """
    for what, value in (("service", service), ("namespace", namespace)):
        if not isinstance(value, str) or not re.fullmatch(_DNS_LABEL, value):
            raise CertificateError(f"{what} name {value!r} is not a valid Kubernetes name (RFC 1123 label)")
    return [
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def not_valid_after(cert_pem: bytes) -> datetime.datetime:
    """The expiry time (UTC) of the first certificate in ``cert_pem``."""
    return _load_cert(cert_pem, "certificate").not_valid_after_utc


def needs_renewal(
    cert_pem: bytes, *, now: datetime.datetime | None = None, remaining_fraction: float = 1 / 3
) -> bool:
    """True when less than ``remaining_fraction`` of the certificate's lifetime is left.

    Renewing at a third left (as cert-manager does by default) leaves two chances for a daily
    job to run before expiry even if one run fails. A certificate that is not valid yet, or
    does not parse, also needs renewing.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (ValueError, TypeError):
        return True
    now = now or _now()
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now < start or now >= end:
        return True
    return (end - now) < (end - start) * remaining_fraction


def signed_by(cert_pem: bytes, ca_cert_pem: bytes) -> bool:
    """True when the first certificate in ``cert_pem`` was signed by the CA's key."""
    cert = _load_cert(cert_pem, "certificate")
    ca = _load_cert(ca_cert_pem, "CA certificate")
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def bundle_certificates(bundle_pem: bytes) -> list[x509.Certificate]:
    """The certificates in a PEM bundle (an empty bundle gives an empty list)."""
    if not bundle_pem.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(bundle_pem)
    except (ValueError, TypeError) as e:
        raise CertificateError(f"bundle is not a list of PEM certificates: {e}") from None


def merge_bundle(*bundles: bytes, now: datetime.datetime | None = None) -> bytes:
    """Join PEM bundles into one, first occurrence first, dropping duplicates and expired CAs.

    During a CA change the webhook's caBundle holds the new CA and the old one, so the
    apiserver trusts both the serving certificate still in use and its replacement: no call
    fails while the pods pick up the new Secret. Expired certificates are dropped so the
    bundle does not grow with every rotation.
    """
    now = now or _now()
    out: list[bytes] = []
    seen: set[bytes] = set()
    for bundle in bundles:
        for cert in bundle_certificates(bundle):
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in seen or cert.not_valid_after_utc <= now:
                continue
            seen.add(der)
            out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)
