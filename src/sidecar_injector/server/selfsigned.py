"""A throw-away CA and serving certificate, for ``serve`` run with no certificate given.

So that a new user sees the webhook answer in one command: the CA bundle is written next
to the certificate, and its path printed, for ``curl --cacert`` or a webhook's caBundle.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from pathlib import Path

from sidecar_injector.install import certs

__all__ = ["SelfSigned", "make_self_signed"]


class SelfSigned:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_bundle = directory / "ca.crt"
        self.cert = directory / "tls.crt"
        self.key = directory / "tls.key"


def make_self_signed(extra_names: list[str] | None = None, days: int = 7) -> SelfSigned:
    """Write ``ca.crt``, ``tls.crt`` and ``tls.key`` to a new private temporary directory."""
    directory = Path(tempfile.mkdtemp(prefix="sidecar-injector-"))
    files = SelfSigned(directory)
    ca_cert, ca_key = certs.generate_ca("sidecar-injector self-signed CA", days)
    dns = ["localhost"]
    host = socket.gethostname().lower().rstrip(".")
    if host and host != "localhost":
        dns.append(host)
    ips = ["127.0.0.1", "::1"]
    for name in extra_names or []:
        (ips if _is_ip(name) else dns).append(name)
    cert, key = certs.issue_serving_cert(ca_cert, ca_key, dns, ips, days=days)
    files.ca_bundle.write_bytes(ca_cert)
    files.cert.write_bytes(cert)
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return files


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
