"""CPU per request: ``core.admission.review`` alone against the server's whole request path.

The server path is everything but TLS and sockets: HTTP parsing, routing, the review,
metrics, the JSON log line (to a null stream) and the response bytes, fed the same
request in-process through a recording transport. The difference is what the server adds
on top of the core. CPU time (``process_time``), best of 5, so other load on the machine
matters less than for wall-clock figures.

    python bench/server_overhead.py [--config ../shared/bench/config.yaml] [--review FILE]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sidecar_injector.config import configload
from sidecar_injector.core.admission import review
from sidecar_injector.server.app import State, WebhookApp
from sidecar_injector.server.http import Connections, HttpProtocol, Limits
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics

SHARED = Path(__file__).resolve().parents[2] / "shared" / "bench"


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class NullStream(io.RawIOBase):
    def write(self, b: Any) -> int:
        return len(b)


class Stderr:
    buffer = NullStream()

    def flush(self) -> None:
        pass


def best(fn: Any, n: int) -> float:
    result = float("inf")
    for _ in range(5):
        start = time.process_time()
        fn(n)
        result = min(result, (time.process_time() - start) / n)
    return result * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(SHARED / "config.yaml"))
    ap.add_argument("--review", help="AdmissionReview JSON (default: made by make_review.py)")
    ap.add_argument("-n", type=int, default=10000)
    args = ap.parse_args()
    if args.review:
        body = Path(args.review).read_bytes()
    else:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, str(SHARED / "make_review.py"), f.name], check=True,
                           capture_output=True)
            body = Path(f.name).read_bytes()
    configs = configload.load_configs(args.config)
    request = (b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    app = WebhookApp(State(configs), Metrics(), JsonLog(Stderr(), "info"))
    proto = HttpProtocol(app.webhook, Connections(), Limits())
    proto.connection_made(NullTransport())  # type: ignore[arg-type]

    def core(n: int) -> None:
        for _ in range(n):
            review(body, configs)

    def server(n: int) -> None:
        for _ in range(n):
            proto.data_received(request)

    core_us, server_us = best(core, args.n), best(server, args.n)
    print(f"review body {len(body)} bytes, {len(configs.configs)} config(s)")
    print(f"core.admission.review      {core_us:7.1f} us CPU per request")
    print(f"server path without TLS    {server_us:7.1f} us CPU per request")
    print(f"added by the server        {server_us - core_us:7.1f} us")


if __name__ == "__main__":
    main()
