"""TLS for the webhook port: a hardened ``SSLContext`` and certificate reload without restart.

Policy (webhook-protocol.md section 5): TLS 1.2 minimum, TLS 1.2 suites limited to ECDHE
key exchange with AEAD ciphers (every TLS 1.3 suite already is), ALPN ``http/1.1`` only (the
apiserver never speaks HTTP/2 to webhooks, and refusing it avoids the HTTP/2 rapid-reset
class of bugs), no compression or renegotiation, and with ``--client-ca`` a client
certificate signed by that CA is required.

Reload: the listener keeps the ``SSLContext`` it was created with, but that context's SNI
callback, which OpenSSL calls on every ClientHello (with or without a server name), moves
each new connection onto the newest context. Established connections keep the certificate
they were handshaken with; no listener is closed, so no request fails during a swap. A
Secret mounted as a volume changes by an atomic symlink swap, so files are compared by
content on each poll, not watched.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

from cryptography import x509

from sidecar_injector.core.errors import InjectorError

__all__ = ["TLS12_CIPHERS", "ServingCert", "TLSConfigError", "server_context"]

# OpenSSL names for ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, RSA or ECDSA keys.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class TLSConfigError(InjectorError):
    """The certificate, key or client CA cannot be loaded."""


def server_context(cert_file: str, key_file: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context with the policy above; raises :class:`TLSConfigError` naming the file."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSConfigError(f"cannot load certificate {cert_file} with key {key_file}: {e}") from None
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            raise TLSConfigError(f"cannot load client CA {client_ca}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise TLSConfigError(f"cannot read {path}: {e}") from None


def _not_after(cert_pem: bytes, cert_file: str) -> float:
    try:
        return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()
    except ValueError as e:
        raise TLSConfigError(f"{cert_file}: not a PEM certificate: {e}") from None


class ServingCert:
    """The serving certificate in force, and the listener context that hands it out."""

    def __init__(self, cert_file: str, key_file: str, client_ca: str | None = None) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca = client_ca
        self._digest = ""
        self._failed_digest = ""
        self.not_after = 0.0
        first = self._load_if_changed()
        assert first is not None  # nothing was loaded before, so it "changed"
        self.current = first
        self.listener = first
        """The context to give the listening socket; new handshakes switch to ``current``."""
        self.listener.sni_callback = self._select

    def _files(self) -> list[str]:
        return [f for f in (self.cert_file, self.key_file, self.client_ca) if f]

    def _digest_now(self) -> tuple[str, bytes, TLSConfigError | None]:
        """The files' digest, the certificate's PEM, and the error reading one, if any.

        A file that cannot be read is hashed by its error, as configload.fingerprint does:
        so an unreadable file is one version, reported once, not once per poll.
        """
        h = hashlib.sha256()
        cert_pem = b""
        error: TLSConfigError | None = None
        for f in self._files():
            try:
                data = _read(f)
            except TLSConfigError as e:
                error = error or e
                data = b"\1unreadable: " + str(e).encode()
            if f == self.cert_file:
                cert_pem = data
            h.update(data + b"\0")
        return h.hexdigest(), cert_pem, error

    def _load_if_changed(self) -> ssl.SSLContext | None:
        digest, cert_pem, error = self._digest_now()
        if digest in (self._digest, self._failed_digest):
            return None
        if error is not None:
            self._failed_digest = digest
            raise error
        try:
            ctx = server_context(self.cert_file, self.key_file, self.client_ca)
            not_after = _not_after(cert_pem, self.cert_file)
        except TLSConfigError:
            # Report a broken version once, not on every poll; a later change is tried again.
            self._failed_digest = digest
            raise
        # The files may have been swapped again between reading and loading; then load
        # again on the next poll rather than record a digest of something else.
        if self._digest_now()[0] == digest:
            self._digest = digest
        self.not_after = not_after
        return ctx

    def reload(self) -> bool:
        """Load the files again if their contents changed. True if a new cert is now served.

        Raises :class:`TLSConfigError` (and keeps serving the old one) if the new files do not
        load, e.g. a key that does not match the certificate, caught mid-swap.
        """
        ctx = self._load_if_changed()
        if ctx is None:
            return False
        self.current = ctx
        return True

    def _select(self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None,
                listener: ssl.SSLContext) -> None:
        current = self.current
        if current is not listener:
            conn.context = current
