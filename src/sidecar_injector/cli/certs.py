"""``sidecar-injector certs``: make the webhook's CA and serving certificate.

Two modes:
- ``--out-dir DIR`` writes ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key`` (keys readable by the
  owner only) and prints the base64 caBundle on stdout. A CA already in DIR is reused, so running
  it again renews the serving certificate without changing the caBundle.
- ``--apply`` fills or renews the TLS Secret and the webhook configuration's caBundle in the
  cluster (the bootstrap Job). The Kubernetes client is imported only in this mode.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import sys
import tempfile
from pathlib import Path

from sidecar_injector.install import certs

DEFAULT_CA_DAYS = 3650
DEFAULT_CERT_DAYS = 365


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "certs",
        help="make (or renew, in a cluster) the webhook's CA and serving certificate",
        description=(
            "Make a CA and a serving certificate for the webhook Service, with the names the "
            "API server checks (NAME.NS.svc and its short and long forms). Either write them to "
            "--out-dir and print the caBundle, or --apply them to the cluster's Secret and "
            "MutatingWebhookConfiguration (idempotent; renews when a third of the lifetime is left)."
        ),
    )
    p.add_argument("--service", required=True, metavar="NAME", help="the webhook's Service name")
    p.add_argument("-n", "--namespace", required=True, metavar="NS", help="the Service's namespace")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out-dir", type=Path, metavar="DIR", help="write ca.crt, ca.key, tls.crt, tls.key here")
    mode.add_argument("--apply", action="store_true", help="fill or renew the Secret and caBundle in-cluster")
    p.add_argument("--secret", metavar="NAME", help="with --apply: the kubernetes.io/tls Secret to fill")
    p.add_argument("--webhook-config", metavar="NAME", help="with --apply: the MutatingWebhookConfiguration to patch")
    p.add_argument("--kubeconfig", metavar="PATH", help="with --apply: kubeconfig (default: in-cluster)")
    p.add_argument(
        "--days",
        type=int,
        default=DEFAULT_CERT_DAYS,
        metavar="N",
        help=f"serving certificate lifetime (default {DEFAULT_CERT_DAYS})",
    )
    p.add_argument(
        "--ca-days",
        type=int,
        default=DEFAULT_CA_DAYS,
        metavar="N",
        help=f"CA lifetime, for a new CA (default {DEFAULT_CA_DAYS})",
    )
    p.add_argument("--dns", action="append", default=[], metavar="NAME", help="an extra DNS name (repeatable)")
    p.add_argument("--ip", action="append", default=[], metavar="ADDR", help="an extra IP address (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dns_names = [*certs.service_dns_names(args.service, args.namespace), *args.dns]
    if args.apply:
        return _apply(args, dns_names)
    if args.secret or args.webhook_config or args.kubeconfig:
        raise certs.CertificateError("--secret, --webhook-config and --kubeconfig go with --apply")
    return _write(args.out_dir, dns_names, args.ip, ca_days=args.ca_days, cert_days=args.days)


def _apply(args: argparse.Namespace, dns_names: list[str]) -> int:
    if not args.secret or not args.webhook_config:
        raise certs.CertificateError("--apply needs --secret NAME and --webhook-config NAME")
    # Lazy: the kubernetes client is needed only here.
    from sidecar_injector.install import bootstrap

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    client = bootstrap.load_client(args.kubeconfig)
    with client:
        result = bootstrap.apply(
            client,
            namespace=args.namespace,
            service=args.service,
            secret=args.secret,
            webhook_config=args.webhook_config,
            dns_names=dns_names,
            ip_addresses=args.ip,
            ca_days=args.ca_days,
            cert_days=args.days,
        )
    expiry = certs.not_valid_after(result.plan.secret_data["tls.crt"]).isoformat()
    if not (result.secret_updated or result.bundle_updated):
        print(f"certificates are current (serving certificate valid until {expiry}); nothing changed")
    else:
        print(
            f"updated: secret={'yes' if result.secret_updated else 'no'} "
            f"caBundle={'yes' if result.bundle_updated else 'no'}; "
            f"serving certificate valid until {expiry}"
        )
    return 0


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # Write then rename, so a reader (or a crash) never sees half a key; the mode is set on the
    # temporary file before any byte is written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_ca(out_dir: Path) -> tuple[bytes, bytes] | None:
    ca_crt, ca_key = out_dir / "ca.crt", out_dir / "ca.key"
    have = [p.exists() for p in (ca_crt, ca_key)]
    if not any(have):
        return None
    if not all(have):
        missing = ca_key if have[0] else ca_crt
        raise certs.CertificateError(
            f"{missing} is missing while its pair exists; restore it, or remove both to make a new CA"
        )
    try:
        return ca_crt.read_bytes(), ca_key.read_bytes()
    except OSError as e:
        raise certs.CertificateError(f"cannot read the CA in {out_dir}: {e.strerror}") from None


def _write(out_dir: Path, dns_names: list[str], ips: list[str], *, ca_days: int, cert_days: int) -> int:
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise certs.CertificateError(f"cannot create {out_dir}: {e.strerror}") from None
    if not out_dir.is_dir():
        raise certs.CertificateError(f"{out_dir} is not a directory")
    existing = _read_ca(out_dir)
    if existing:
        ca_crt, ca_key = existing
        # issue_serving_cert checks the pair, that it is a CA and that it has not expired.
    else:
        ca_crt, ca_key = certs.generate_ca(f"{dns_names[0]} webhook CA", ca_days)
    try:
        tls_crt, tls_key = certs.issue_serving_cert(ca_crt, ca_key, dns_names, ips, cert_days)
    except certs.CertificateError as e:
        if not existing:
            raise
        raise certs.CertificateError(
            f"the CA in {out_dir} cannot be used: {e} (remove ca.crt and ca.key there to make a new CA)"
        ) from None
    try:
        if not existing:
            _write_file(out_dir / "ca.key", ca_key, 0o600)
            _write_file(out_dir / "ca.crt", ca_crt, 0o644)
        _write_file(out_dir / "tls.key", tls_key, 0o600)
        _write_file(out_dir / "tls.crt", tls_crt, 0o644)
    except OSError as e:
        raise certs.CertificateError(f"cannot write to {out_dir}: {e.strerror}") from None
    if existing:
        print(f"reused the CA in {out_dir}", file=sys.stderr)
    expiry = certs.not_valid_after(tls_crt).isoformat()
    print(
        f"wrote ca.crt, ca.key, tls.crt, tls.key to {out_dir}; serving certificate valid until {expiry}",
        file=sys.stderr,
    )
    print("caBundle (base64, for clientConfig.caBundle):", file=sys.stderr)
    print(base64.b64encode(ca_crt).decode("ascii"))
    return 0
