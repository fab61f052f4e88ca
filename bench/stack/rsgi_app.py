"""Candidate 4: a trivial RSGI app, granian's native interface."""

from __future__ import annotations

from typing import Any

import orjson


class App:
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        doc = orjson.loads(await proto())
        out = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                            "response": {"uid": doc["request"]["uid"], "allowed": True}})
        proto.response_bytes(200, [("content-type", "application/json")], out)


app = App()
