"""The small PKI the test control plane needs, built with ``cryptography``.

kube-apiserver wants a serving certificate, a client CA whose certificates it accepts (the admin
client certificate is in ``O=system:masters``, as envtest's is) and a service-account key pair.
Everything here is throw-away: ECDSA P-256 keys, short validity, written into the control
plane's temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sidecar_injector.install import certs


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    # Backdated a little so that a clock a second behind does not reject a fresh certificate.
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def make_ca(common_name: str, days: int = 7) -> tuple[bytes, bytes]:
    """A self-signed CA: (cert_pem, key_pem), the project's own (``sidecar_injector.install.certs``)."""
    return certs.generate_ca(common_name=common_name, days=days)


def make_leaf(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = True,
    client: bool = False,
    days: int = 7,
) -> tuple[bytes, bytes]:
    """A certificate signed by the CA: (cert_pem, key_pem). SANs are what Go checks, never the CN."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(days)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def make_rsa_key_pair() -> tuple[bytes, bytes]:
    """(public_pem, private_pem) for service-account token signing (RS256, what kube expects)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public, _key_pem(key)


def serial_of(cert_pem_or_der: bytes) -> int:
    """The serial number of a PEM or DER certificate (to tell two serving certificates apart)."""
    if cert_pem_or_der.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(cert_pem_or_der).serial_number
    return x509.load_der_x509_certificate(cert_pem_or_der).serial_number
