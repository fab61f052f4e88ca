"""Structured logs: one JSON object per line on stderr.

Not the ``logging`` module: a record through it costs several times the JSON encoding,
and the webhook writes one line per admission. Inside the event loop, lines are gathered
and written once per loop turn, so a burst of requests costs one ``write`` rather than one
per request; outside it (start-up, tests) each line is written at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO, Any

import orjson

__all__ = ["LEVELS", "JsonLog"]

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


_second = -1
_second_text = ""


def _timestamp(now: float) -> str:
    """RFC 3339 UTC with milliseconds; the formatted second is cached (strftime costs ~2 us)."""
    global _second, _second_text
    secs = int(now)
    if secs != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _second = secs
    return f"{_second_text}.{int((now - secs) * 1000):03d}Z"


class JsonLog:
    """Writes ``{"ts", "level", "msg", ...fields}`` lines to a binary or text stream."""

    def __init__(self, stream: IO[Any] | None = None, level: str = "info") -> None:
        stream = stream if stream is not None else sys.stderr
        # Write bytes when the stream has a binary buffer (stderr does); tests pass StringIO.
        self._binary = getattr(stream, "buffer", None)
        self._stream = stream
        self.threshold = LEVELS[level]
        self._pending: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Batch writes on ``loop`` from now on (``None``: write each line at once)."""
        self.flush()
        self._loop = loop

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def log(self, level: str, msg: str, **fields: Any) -> None:
        if LEVELS[level] >= self.threshold:
            self.record(level, msg, fields)

    def record(self, level: str, msg: str, fields: dict[str, Any]) -> None:
        """Write one line (no level check: callers on the hot path check :meth:`enabled` first)."""
        record: dict[str, Any] = {"ts": _timestamp(time.time()), "level": level, "msg": msg}
        record.update(fields)
        line = orjson.dumps(record, default=str) + b"\n"
        if self._loop is None:
            self._write(line)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(line)

    def info(self, msg: str, **fields: Any) -> None:
        self.log("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.log("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.log("error", msg, **fields)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            if self._binary is not None:
                self._binary.write(data)
                self._binary.flush()
            else:
                self._stream.write(data.decode())
                self._stream.flush()
        except (OSError, ValueError):
            # stderr closed or gone: losing a log line must not fail a request.
            pass
