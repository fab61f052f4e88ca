"""A second, tiny mutating webhook for the reinvocation test: it appends one container.

Standard library only (``http.server`` + ``ssl``). It is idempotent itself (it adds its container
only when absent, as the good-practices page asks) and records every pod it was shown, so the test
can check that it ran after ours, on a pod that already carried our sidecar.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTAINER = {"name": "appended-by-second-webhook", "image": "registry.k8s.io/pause:3.10"}


class AppenderWebhook:
    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.seen: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                review = json.loads(body)
                request = review["request"]
                pod = request["object"]
                owner.seen.append(pod)
                response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
                names = [c["name"] for c in pod["spec"].get("containers", [])]
                if CONTAINER["name"] not in names:
                    patch = [{"op": "add", "path": "/spec/containers/-", "value": CONTAINER}]
                    response["patchType"] = "JSONPatch"
                    response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
                out = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert_file), str(key_file))
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/append"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> AppenderWebhook:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
