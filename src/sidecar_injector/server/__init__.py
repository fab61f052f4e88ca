"""The HTTPS admission webhook: ``sidecar-injector serve``.

Modules, outer to inner: ``run`` (lifecycle, signals, drain) wires ``http`` (the HTTP/1.1
protocol and its limits), ``app`` (routes; calls ``core.admission.review``), ``tls``
(hardened context, certificate reload), ``reload`` (config and certificate polling),
``metrics`` (Prometheus) and ``logs`` (JSON lines on stderr). ``selfsigned`` makes the
throw-away certificate used when none is given.
"""

from sidecar_injector.server.run import Options, Server, run

__all__ = ["Options", "Server", "run"]
