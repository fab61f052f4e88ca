"""Certificates: generation, real TLS verification for every SAN, renewal, bundles, the CLI."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from sidecar_injector.cli import main
from sidecar_injector.install import certs, rotation

NAMES = certs.service_dns_names("sidecar-injector", "injector-system")
UTC = datetime.UTC


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.generate_ca("test CA", 30)


@pytest.fixture(scope="module")
def serving(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return certs.issue_serving_cert(*ca, [*NAMES, "localhost"], ["127.0.0.1", "::1"], days=10)


def _handshake(server_name: str, ca_pem: bytes, cert: tuple[bytes, bytes], tmp_path: Path) -> None:
    """A real TLS handshake (OpenSSL on both ends) checking ``server_name`` against the chain."""
    crt, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(cert[0])
    key.write_bytes(cert[1])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(crt, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and hostname
    client_ctx.load_verify_locations(cadata=ca_pem.decode())
    a, b = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as e:
            errors.append(e)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=server_name) as c:
            c.sendall(b"x")
    finally:
        t.join(5)
        a.close()
        b.close()


def _verify_like_go(cert_pem: bytes, ca_pem: bytes, name: str) -> None:
    """Path validation with cryptography's strict RFC 5280 verifier (close to Go's crypto/x509)."""
    store = Store(x509.load_pem_x509_certificates(ca_pem))
    if ":" in name or name.replace(".", "").isdigit():
        import ipaddress

        subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    else:
        subject = x509.DNSName(name)
    verifier = PolicyBuilder().store(store).build_server_verifier(subject)
    verifier.verify(x509.load_pem_x509_certificate(cert_pem), [])


# --- generation ---------------------------------------------------------------------------------


def test_ca_is_a_ca_with_the_asked_lifetime(ca: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(ca[0])
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(UTC)
    assert datetime.timedelta(days=29, hours=23) < lifetime <= datetime.timedelta(days=30)
    key = serialization.load_pem_private_key(ca[1], password=None)
    assert key.public_key() == cert.public_key()


@pytest.mark.parametrize("name", [*NAMES, "localhost", "127.0.0.1", "::1"])
def test_serving_cert_verifies_for_every_san(
    name: str, ca: tuple[bytes, bytes], serving: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _verify_like_go(serving[0], ca[0], name)
    _handshake(name, ca[0], serving, tmp_path)


@pytest.mark.parametrize(
    "name", ["other.injector-system.svc", "sidecar-injector.default.svc", "evil.example", "10.0.0.1"]
)
def test_serving_cert_is_rejected_for_another_name(
    name: str, ca: tuple[bytes, bytes], serving: tuple[bytes, bytes], tmp_path: Path
) -> None:
    with pytest.raises(VerificationError):
        _verify_like_go(serving[0], ca[0], name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(name, ca[0], serving, tmp_path)


def test_serving_cert_is_rejected_under_another_ca(serving: tuple[bytes, bytes], tmp_path: Path) -> None:
    other_ca, _ = certs.generate_ca("other", 30)
    with pytest.raises(VerificationError):
        _verify_like_go(serving[0], other_ca, NAMES[0])
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(NAMES[0], other_ca, serving, tmp_path)


def test_serving_cert_shape(serving: tuple[bytes, bytes], ca: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(serving[0])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [*NAMES, "localhost"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.subject.rfc4514_string() == f"CN={NAMES[0]}"
    assert certs.signed_by(serving[0], ca[0])
    assert not certs.signed_by(serving[0], certs.generate_ca("x", 1)[0])
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(UTC)
    assert datetime.timedelta(days=9, hours=23) < lifetime <= datetime.timedelta(days=10)


def test_serving_cert_never_outlives_its_ca() -> None:
    short_ca = certs.generate_ca("short", 2)
    crt, _ = certs.issue_serving_cert(*short_ca, ["a.b.svc"], days=365)
    assert certs.not_valid_after(crt) == certs.not_valid_after(short_ca[0])


def test_names_are_normalised_and_deduplicated(ca: tuple[bytes, bytes]) -> None:
    crt, _ = certs.issue_serving_cert(*ca, ["A.B.svc.", "a.b.svc"], ["127.0.0.1", " 127.0.0.1"])
    san = x509.load_pem_x509_certificate(crt).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(v.value) for v in san.value] == ["a.b.svc", "127.0.0.1"]


@pytest.mark.parametrize(
    ("dns", "ips", "message"),
    [
        ([], [], "at least one DNS name or IP"),
        (["under_score.svc"], [], "not a valid DNS name"),
        (["bad..name"], [], "not a valid DNS name"),
        (["a" * 64 + ".svc"], [], "not a valid DNS name"),
        (["ok.svc"], ["300.1.1.1"], "not a valid IP"),
        (["ok.svc"], ["0.0.0.0"], "unspecified address"),
        ("ok.svc", [], "not a string"),
    ],
)
def test_bad_names_are_clear_errors(ca: tuple[bytes, bytes], dns: list[str], ips: list[str], message: str) -> None:
    with pytest.raises(certs.CertificateError, match=message):
        certs.issue_serving_cert(*ca, dns, ips)


def test_bad_inputs_are_clear_errors(ca: tuple[bytes, bytes], serving: tuple[bytes, bytes]) -> None:
    with pytest.raises(certs.CertificateError, match="not a PEM certificate"):
        certs.issue_serving_cert(b"garbage", ca[1], ["a.svc"])
    with pytest.raises(certs.CertificateError, match="not an unencrypted PEM private key"):
        certs.issue_serving_cert(ca[0], b"garbage", ["a.svc"])
    with pytest.raises(certs.CertificateError, match="does not belong"):
        certs.issue_serving_cert(ca[0], certs.generate_ca("x", 1)[1], ["a.svc"])
    with pytest.raises(certs.CertificateError, match="not a CA"):
        certs.issue_serving_cert(serving[0], serving[1], ["a.svc"])
    for days in (0, -1, True, 40000):
        with pytest.raises(certs.CertificateError, match="lifetime"):
            certs.issue_serving_cert(*ca, ["a.svc"], days=days)
        with pytest.raises(certs.CertificateError, match="lifetime"):
            certs.generate_ca("x", days)
    with pytest.raises(certs.CertificateError, match="common name"):
        certs.generate_ca("  ", 1)
    with pytest.raises(certs.CertificateError, match="not a valid Kubernetes name"):
        certs.service_dns_names("Bad_Name", "ns")


# --- renewal and bundles ------------------------------------------------------------------------


def test_needs_renewal_at_a_third_left(serving: tuple[bytes, bytes]) -> None:
    cert = x509.load_pem_x509_certificate(serving[0])
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    life = end - start
    assert not certs.needs_renewal(serving[0], now=start + life * 0.6)
    assert certs.needs_renewal(serving[0], now=start + life * 0.7)
    assert certs.needs_renewal(serving[0], now=end + datetime.timedelta(seconds=1))
    assert certs.needs_renewal(serving[0], now=start - datetime.timedelta(seconds=1))
    assert certs.needs_renewal(b"not a certificate")


def test_merge_bundle_dedupes_keeps_order_and_drops_expired() -> None:
    a, b = certs.generate_ca("a", 10)[0], certs.generate_ca("b", 100)[0]
    merged = certs.merge_bundle(a, b + a, b)
    assert [c.subject.rfc4514_string() for c in certs.bundle_certificates(merged)] == ["CN=a", "CN=b"]
    later = datetime.datetime.now(UTC) + datetime.timedelta(days=20)
    assert certs.bundle_certificates(certs.merge_bundle(a, b, now=later))[0].subject.rfc4514_string() == "CN=b"
    assert certs.merge_bundle(b"", b" \n") == b""
    with pytest.raises(certs.CertificateError):
        certs.merge_bundle(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def _plan(data: dict[str, bytes], bundles: list[bytes], **kw: object) -> rotation.Plan:
    args: dict[str, object] = dict(dns_names=NAMES, ca_common_name="ca", ca_days=300, cert_days=30)
    args.update(kw)
    return rotation.plan(data, bundles, **args)  # type: ignore[arg-type]


def test_plan_fills_an_empty_secret_then_changes_nothing() -> None:
    first = _plan({"tls.crt": b"", "tls.key": b""}, [b""])
    assert first.new_ca and first.new_cert
    assert first.ca_bundle == first.secret_data["ca.crt"]
    assert certs.signed_by(first.secret_data["tls.crt"], first.secret_data["ca.crt"])
    again = _plan(first.secret_data, [first.ca_bundle])
    assert not again.new_ca and not again.new_cert and again.reasons == []
    assert again.secret_data == first.secret_data and again.ca_bundle == first.ca_bundle


def test_plan_renews_the_serving_cert_under_the_same_ca() -> None:
    first = _plan({}, [])
    soon = datetime.datetime.now(UTC) + datetime.timedelta(days=21)  # 30-day cert, 9 days left
    renewed = _plan(first.secret_data, [first.ca_bundle], now=soon)
    assert renewed.new_cert and not renewed.new_ca
    assert renewed.secret_data["ca.crt"] == first.secret_data["ca.crt"]
    assert renewed.secret_data["tls.crt"] != first.secret_data["tls.crt"]
    assert renewed.ca_bundle == first.ca_bundle


def test_plan_changes_the_ca_keeping_the_old_one_in_the_bundle(tmp_path: Path) -> None:
    first = _plan({}, [], ca_days=30, cert_days=5)
    late = datetime.datetime.now(UTC) + datetime.timedelta(days=22)  # CA has 8 of 30 days left
    changed = _plan(first.secret_data, [first.ca_bundle], ca_days=30, cert_days=5, now=late)
    assert changed.new_ca and changed.new_cert
    bundle = certs.bundle_certificates(changed.ca_bundle)
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in bundle]
    assert pem == [changed.secret_data["ca.crt"], first.secret_data["ca.crt"]]
    # Both the certificate the pods still serve and its replacement verify against the bundle.
    for served in (first.secret_data, changed.secret_data):
        _handshake(NAMES[0], changed.ca_bundle, (served["tls.crt"], served["tls.key"]), tmp_path)


def test_plan_reissues_for_new_names_mismatched_keys_and_garbage() -> None:
    first = _plan({}, [])
    more = _plan(first.secret_data, [first.ca_bundle], dns_names=[*NAMES, "extra.example"])
    assert more.new_cert and not more.new_ca and any("wanted" in r for r in more.reasons)
    swapped = dict(first.secret_data, **{"tls.key": certs.generate_ca("x", 1)[1]})
    assert _plan(swapped, [first.ca_bundle]).new_cert
    broken = _plan(dict(first.secret_data, **{"ca.key": b"junk"}), [b"junk"])
    assert broken.new_ca and broken.new_cert
    # The garbage bundle is replaced; the old CA stays trusted while the pods switch.
    assert len(certs.bundle_certificates(broken.ca_bundle)) == 2


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_writes_private_keys_and_reuses_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    args = ["certs", "--service", "sidecar-injector", "--namespace", "injector-system", "--out-dir", str(out)]
    assert main([*args, "--dns", "localhost", "--ip", "127.0.0.1", "--days", "30"]) == 0
    bundle = capsys.readouterr().out.strip()
    assert base64.b64decode(bundle) == (out / "ca.crt").read_bytes()
    for name, mode in (("ca.key", 0o600), ("tls.key", 0o600), ("ca.crt", 0o644), ("tls.crt", 0o644)):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == mode, name
    _handshake(
        "127.0.0.1",
        (out / "ca.crt").read_bytes(),
        ((out / "tls.crt").read_bytes(), (out / "tls.key").read_bytes()),
        tmp_path,
    )
    first_tls = (out / "tls.crt").read_bytes()

    assert main(args) == 0
    assert capsys.readouterr().out.strip() == bundle  # same CA, same caBundle
    assert (out / "tls.crt").read_bytes() != first_tls
    assert certs.signed_by((out / "tls.crt").read_bytes(), (out / "ca.crt").read_bytes())


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["certs", "--service", "svc", "--namespace", "ns", "--out-dir", str(tmp_path)]
    assert main([*base, "--ip", "not-an-ip"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "sidecar-injector: error: not a valid IP address for a certificate: 'not-an-ip'"
    )
    (tmp_path / "ca.crt").write_bytes(b"x")
    assert main(base) == 1
    assert "ca.key is missing" in capsys.readouterr().err
    assert main(["certs", "--service", "svc", "--namespace", "ns", "--apply"]) == 1
    assert "--apply needs --secret" in capsys.readouterr().err


def test_cli_refuses_a_ca_pair_that_does_not_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ca.crt").write_bytes(certs.generate_ca("one", 1)[0])
    (tmp_path / "ca.key").write_bytes(certs.generate_ca("two", 1)[1])
    assert main(["certs", "--service", "svc", "--namespace", "ns", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not belong" in err and "remove ca.crt and ca.key" in err
    assert not (tmp_path / "tls.crt").exists()


def test_the_kubernetes_client_is_imported_only_by_certs_apply(tmp_path: Path) -> None:
    """Lazy on purpose: `serve`, `manifests` and `certs --out-dir` must work without the client."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sidecar_injector.cli import main\n"
        f"assert main(['certs', '--service', 's', '--namespace', 'n', '--out-dir', {str(tmp_path)!r}]) == 0\n"
        "assert main(['manifests', '--image', 'x:1']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
