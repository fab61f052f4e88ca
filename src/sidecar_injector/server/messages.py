"""What a route of the HTTP server sees and answers: :class:`Request` and :class:`Response`.

The handlers (:mod:`~sidecar_injector.server.app`, the config webhook, the workers) are plain
functions from one to the other and know nothing of connections, parsing or limits; this
module is what they share with the protocol (:mod:`~sidecar_injector.server.http`), kept
apart from it so that they need not import the protocol's machinery to name their types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Handler", "Request", "Response", "text_response"]


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    """The path without the query string: the apiserver appends ``?timeout=10s``."""
    content_type: bytes | None
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: tuple[tuple[bytes, bytes], ...] = ()


Handler = Callable[[Request], Response]


def text_response(status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> Response:
    return Response(status, message.encode() + b"\n", b"text/plain; charset=utf-8", headers)
