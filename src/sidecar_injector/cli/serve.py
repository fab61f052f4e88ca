"""``sidecar-injector serve``: run the HTTPS admission webhook."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from sidecar_injector.config.configload import BUILTIN_EXAMPLE
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core.config import DEFAULT_PREFIX
from sidecar_injector.core.errors import InjectorError


class UsageError(InjectorError):
    """Flags that do not go together."""


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTPS admission webhook",
        description=(
            "Serve POST /mutate over HTTPS for kube-apiserver, /healthz and /readyz on both ports, "
            "and /metrics on the plain-HTTP metrics port. With no --config, the built-in example "
            "config is used; with no --tls-cert/--tls-key, a self-signed certificate is made at "
            "start and the path of its CA bundle printed."
        ),
    )
    p.add_argument("-c", "--config", metavar="PATH",
                   help="SidecarConfig YAML file or directory (reloaded on change)")
    p.add_argument("--config-source", choices=("file", "kubernetes", "both"),
                   help="where SidecarConfigs come from: file (--config), kubernetes (list and watch the "
                        "ClusterSidecarConfig and SidecarConfig objects), or both (merged; files win a name "
                        "collision). Default: file when --config is given, else kubernetes in a cluster")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="credentials for the API (default: $KUBECONFIG, then in-cluster credentials)")
    p.add_argument("--fleet-metrics", nargs="?", const="sidecar-injector", default=None, metavar="WEBHOOK_CONFIG",
                   help="watch every pod: export sidecar_injector_pods{config,state} and a Warning Event on the "
                        "workload of a pod missing its sidecars (needs list/watch on pods; the optional value "
                        "names the MutatingWebhookConfiguration, default sidecar-injector)")
    p.add_argument("--tls-cert", metavar="FILE", help="serving certificate chain, PEM (reloaded on change)")
    p.add_argument("--tls-key", metavar="FILE", help="private key of the serving certificate, PEM")
    p.add_argument("--client-ca", metavar="FILE", help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8443, metavar="PORT", help="HTTPS webhook port (default: %(default)s)")
    p.add_argument("--metrics-host", metavar="HOST", help="address of the metrics port (default: --host)")
    p.add_argument("--metrics-port", type=int, default=8080, metavar="PORT",
                   help="plain-HTTP port for /metrics, /healthz, /readyz (default: %(default)s)")
    p.add_argument("--on-error", choices=("fail", "allow", "deny"), default="fail",
                   help="when injection fails for a pod: fail = HTTP 500, the webhook's failurePolicy "
                        "decides; allow = admit unchanged with a warning; deny = reject the pod "
                        "(default: %(default)s)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX,
                   help="annotation and label prefix pods use (default: %(default)s)")
    p.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION,
                   help="Kubernetes version whose schemas configs are validated against (default: %(default)s)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                   help="info logs one line per admission (default: %(default)s)")
    p.add_argument("--reload-interval", type=float, default=5.0, metavar="SECONDS",
                   help="how often the config and certificate files are checked for changes "
                        "(default: %(default)s)")
    p.add_argument("--drain-delay", type=float, default=5.0, metavar="SECONDS",
                   help="after SIGTERM, keep serving this long with /readyz failing (default: %(default)s)")
    p.add_argument("--shutdown-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="then wait at most this long for requests in progress (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=120.0, metavar="SECONDS",
                   help="close keep-alive connections idle this long (default: %(default)s)")
    p.add_argument("--request-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="close connections that take longer to send a request or TLS handshake "
                        "(default: %(default)s)")
    # The limits of docs/server.md, "Limits" (the defaults fit the shipped Deployment's memory).
    p.add_argument("--max-connections", type=int, default=512, metavar="N",
                   help="webhook connections open at once; more are refused at accept (default: %(default)s)")
    p.add_argument("--max-connections-per-address", type=int, default=256, metavar="N",
                   help="webhook connections from one client address (default: %(default)s)")
    p.add_argument("--first-byte-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="a new connection must complete its TLS handshake and send its first byte within "
                        "this (default: %(default)s)")
    p.add_argument("--max-body-bytes", type=int, default=3 * 1024 * 1024, metavar="BYTES",
                   help="largest review accepted, else 413 before the body is read (default: %(default)s, "
                        "the most kube-apiserver accepts)")
    p.add_argument("--memo-entries", type=int, default=256, metavar="N",
                   help="answers to template-free pods remembered by content, so that the replicas of "
                        "one workload are answered by lookup; 0 turns it off (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes sharing the webhook port, to use N cores; the metrics port "
                        "then reports all of them together (default: %(default)s)")
    # Internal: how the supervisor hands a worker its listening socket and readiness pipe.
    p.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _positive(value: float, flag: str, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise UsageError(f"{flag} must be {'zero or more' if zero_ok else 'more than zero'}, got {value}")


def run(args: argparse.Namespace) -> int:
    # Imported here so that other subcommands do not pay for the server's imports.
    from sidecar_injector.server import Options
    from sidecar_injector.server import run as serve_forever
    from sidecar_injector.server.http import Limits
    from sidecar_injector.server.logs import JsonLog
    from sidecar_injector.server.selfsigned import make_self_signed

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    for port, flag in ((args.port, "--port"), (args.metrics_port, "--metrics-port")):
        if not 0 <= port <= 65535:
            raise UsageError(f"{flag} must be a port number, got {port}")
    _positive(args.reload_interval, "--reload-interval")
    _positive(args.drain_delay, "--drain-delay", zero_ok=True)
    _positive(args.shutdown_timeout, "--shutdown-timeout", zero_ok=True)
    _positive(args.idle_timeout, "--idle-timeout")
    _positive(args.request_timeout, "--request-timeout")
    if args.workers < 1:
        raise UsageError(f"--workers must be 1 or more, got {args.workers}")
    if args.memo_entries < 0:
        raise UsageError(f"--memo-entries must be 0 or more, got {args.memo_entries}")

    log = JsonLog(sys.stderr, args.log_level)
    source = args.config_source
    if source is None:
        from sidecar_injector.kube.client import in_cluster

        source = "file" if args.config or not in_cluster() else "kubernetes"
    if source == "both" and not args.config:
        raise UsageError("--config-source both needs --config")
    config = args.config or (BUILTIN_EXAMPLE if source == "file" else None)
    if not args.config and source == "file":
        log.info("no --config given: serving the built-in example", config=str(BUILTIN_EXAMPLE))
    if args.fleet_metrics and args.workers > 1:
        raise UsageError("--fleet-metrics needs --workers 1 (each worker would watch every pod)")
    if source != "file" and args.workers > 1:
        raise UsageError("--workers needs --config-source file (each worker would watch the API)")
    cert, key = args.tls_cert, args.tls_key
    if not cert:
        extra = [args.host] if args.host not in ("0.0.0.0", "::", "") else []
        made = make_self_signed(extra)
        cert, key = str(made.cert), str(made.key)
        log.info("no --tls-cert given: serving a self-signed certificate", ca_bundle=str(made.ca_bundle))
        print(
            f"sidecar-injector: self-signed certificate; CA bundle: {made.ca_bundle}\n"
            f"  try: curl --cacert {made.ca_bundle} https://localhost:{args.port}/healthz",
            file=sys.stderr, flush=True,
        )
    options = Options(
        config=config, tls_cert=cert, tls_key=key, client_ca=args.client_ca, host=args.host,
        port=args.port, metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        on_error=args.on_error, prefix=args.prefix, kube_version=args.kube_version,
        reload_interval=args.reload_interval, drain_delay=args.drain_delay,
        shutdown_timeout=args.shutdown_timeout,
        limits=Limits(idle_timeout=args.idle_timeout, request_timeout=args.request_timeout,
                      first_byte_timeout=args.first_byte_timeout, max_body=args.max_body_bytes),
        max_connections=args.max_connections, max_connections_per_address=args.max_connections_per_address,
        config_source=source, kubeconfig=args.kubeconfig, fleet_metrics=args.fleet_metrics,
        memo_entries=args.memo_entries,
    )
    if args.listen_fd is not None:  # a worker of a supervisor
        options.sock = socket.socket(fileno=args.listen_fd)
        options.admin = False
        options.ready_fd = args.ready_fd
    elif args.workers > 1:
        return _supervise(args, options, log)
    return serve_forever(options, log)


def _supervise(args: argparse.Namespace, options: Any, log: Any) -> int:
    from sidecar_injector.config.configload import load_configs
    from sidecar_injector.server.tls import server_context
    from sidecar_injector.server.workers import run_workers, worker_command

    # Fail here, once, with one line, rather than in every worker.
    load_configs(options.config, prefix=options.prefix, kube_version=options.kube_version)
    server_context(options.tls_cert, options.tls_key, options.client_ca)
    argv = [
        "serve", "--config", str(options.config), "--tls-cert", options.tls_cert,
        "--tls-key", options.tls_key, "--host", args.host, "--port", str(args.port),
        "--on-error", args.on_error, "--log-level", args.log_level,
        "--prefix", args.prefix, "--kube-version", args.kube_version,
        "--reload-interval", str(args.reload_interval), "--drain-delay", str(args.drain_delay),
        "--shutdown-timeout", str(args.shutdown_timeout), "--idle-timeout", str(args.idle_timeout),
        "--request-timeout", str(args.request_timeout),
        "--max-connections", str(args.max_connections),
        "--max-connections-per-address", str(args.max_connections_per_address),
        "--first-byte-timeout", str(args.first_byte_timeout), "--max-body-bytes", str(args.max_body_bytes),
        "--memo-entries", str(args.memo_entries),
    ]
    if args.client_ca:
        argv += ["--client-ca", args.client_ca]
    return run_workers(options, log, args.workers, worker_command(argv))
