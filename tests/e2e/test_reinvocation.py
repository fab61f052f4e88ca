"""Test 3: idempotence under reinvocation.

Mutating webhooks run in the order of their configurations' names. Ours (``a-...``, with
``reinvocationPolicy: IfNeeded``) injects; a second webhook (``z-...``) then appends a container;
because the object changed after ours ran, the apiserver calls ours again in a second round, on a
pod that already holds our (now defaulted) sidecar. The sidecar must end up there exactly once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .appender import CONTAINER, AppenderWebhook
from .injector import issue_serving_cert
from .webhooks import create_pod, is_injected, pod, read_pod

pytestmark = pytest.mark.e2e

WEBHOOK = "inject.sidecar-injector.io"  # both configurations' webhook is named so


def has_appended(stored: dict[str, Any]) -> bool:
    return CONTAINER["name"] in [c["name"] for c in stored["spec"]["containers"]]


def test_second_webhook_triggers_reinvocation_and_sidecar_stays_single(
    injector: Any,
    register_webhook: Any,
    api: Any,
    control_plane: Any,
    webhook_ca: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    server = injector("article.yaml")
    ours = register_webhook(server, name="a-sidecar-injector", reinvocation_policy="IfNeeded")
    cert, key = issue_serving_cert(*webhook_ca)
    (tmp_path / "appender.crt").write_bytes(cert)
    (tmp_path / "appender.key").write_bytes(key)
    with AppenderWebhook(tmp_path / "appender.crt", tmp_path / "appender.key") as appender:
        register_webhook(
            appender.url, ca_bundle=webhook_ca[0], name="z-appender", reinvocation_policy="Never",
            same_namespaces_as=ours, mutated=lambda p: is_injected(p) and has_appended(p),
        )  # fmt: skip
        ns = ours.namespace("reinvoke")
        seen_before = len(appender.seen)
        # No token volume: the ServiceAccount plugin would otherwise change the pod between
        # rounds too, and this test is about the second webhook.
        bare = pod("reinvoked")
        bare["spec"]["automountServiceAccountToken"] = False
        create_pod(api, ns, bare)
        stored = read_pod(api, ns, "reinvoked")

        # The second webhook ran after ours: the pod it was shown already had our sidecar.
        [shown] = [p for p in appender.seen[seen_before:] if p["metadata"].get("name") == "reinvoked"]
        assert "hello-sidecar" in [c["name"] for c in shown["spec"]["containers"]]

    names = [c["name"] for c in stored["spec"]["containers"]]
    assert names == ["app", "hello-sidecar", CONTAINER["name"]]
    assert [v["name"] for v in stored["spec"]["volumes"]] == ["hello-shared"]
    assert stored["metadata"]["labels"] == {"foo": "bar"}
    app = stored["spec"]["containers"][0]
    assert app["volumeMounts"] == [{"name": "hello-shared", "mountPath": "/shared"}]

    # The apiserver's account: round 0 ours (index 0) and the appender (index 1) both mutated;
    # round 1 reinvoked ours, which changed nothing.
    audit = control_plane.audit_annotations(ns, "reinvoked")
    rounds = {
        k.rsplit("/", 1)[1]: json.loads(v)
        for k, v in audit.items()
        if k.startswith("mutation.webhook.admission.k8s.io/")
    }
    assert rounds == {
        "round_0_index_0": {"configuration": "a-sidecar-injector", "webhook": WEBHOOK, "mutated": True},
        "round_0_index_1": {"configuration": "z-appender", "webhook": WEBHOOK, "mutated": True},
        "round_1_index_0": {"configuration": "a-sidecar-injector", "webhook": WEBHOOK, "mutated": False},
    }
    # And our server's own log agrees: injected in round 0, a no-op in round 1.
    outcomes = [(r["outcome"], r.get("reason")) for r in server.admissions(pod="reinvoked")]
    assert outcomes == [("injected", None), ("skipped", "already-injected")]
