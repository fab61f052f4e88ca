"""Candidate 1: an asyncio Protocol with httptools' parser, on uvloop (``asyncio`` as 4th arg: stdlib loop).

Usage: python proto_server.py PORT CERT KEY [asyncio]
"""

from __future__ import annotations

import asyncio
import ssl
import sys

import httptools
import orjson
import uvloop


class Proto(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        doc = orjson.loads(b"".join(self.body))
        self.body = []
        out = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": doc["request"]["uid"], "allowed": True}})
        self.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))


def main() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    loop = asyncio.new_event_loop() if sys.argv[4:] == ["asyncio"] else uvloop.new_event_loop()
    loop.run_until_complete(loop.create_server(Proto, "127.0.0.1", int(sys.argv[1]), ssl=ctx, backlog=1024))
    loop.run_forever()


if __name__ == "__main__":
    main()
