"""Test 6: the serving certificate rotates (same CA) the way a mounted Secret changes, by a
``..data`` symlink swap, while pods are being created through a ``failurePolicy: Fail`` webhook:
no creation fails, every pod is injected, and new TLS connections get the new certificate.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from . import pki
from .webhooks import create_pod, is_injected, list_pods, pod

pytestmark = pytest.mark.e2e

SWITCH_TIMEOUT = 15.0  # the server checks its files every second (--reload-interval 1)


def test_certificate_rotation_while_creating_pods(
    injector: Any, register_webhook: Any, api: Any, control_plane: Any
) -> None:
    server = injector("article.yaml")
    hook = register_webhook(server, failure_policy="Fail")
    ns = hook.namespace("rotation")
    old_serial = pki.serial_of(server.cert_pem)
    assert server.served_serial() == old_serial

    stop = threading.Event()
    created: list[str] = []
    errors: list[str] = []

    def keep_creating(prefix: str) -> None:
        with control_plane.api_client() as client:
            i = 0
            while not stop.is_set():
                name = f"{prefix}-{i}"
                try:
                    create_pod(client, ns, pod(name))
                    created.append(name)
                except Exception as e:  # every failure is the finding, whatever its type
                    errors.append(f"{name}: {e}")
                i += 1

    def wait_for_created(n: int) -> None:
        deadline = time.monotonic() + 60
        while len(created) < n and not errors:
            assert time.monotonic() < deadline, f"only {len(created)} pods created"
            time.sleep(0.05)

    threads = [threading.Thread(target=keep_creating, args=(p,)) for p in ("rot-a", "rot-b")]
    for t in threads:
        t.start()
    try:
        wait_for_created(10)
        new_serial = pki.serial_of(server.rotate_certificate())
        assert new_serial != old_serial
        deadline = time.monotonic() + SWITCH_TIMEOUT
        while (served := server.served_serial()) != new_serial:
            assert served == old_serial, "served a certificate that is neither the old nor the new one"
            assert time.monotonic() < deadline, f"new certificate not served after {SWITCH_TIMEOUT}s"
            time.sleep(0.1)
        switched_at = len(created)
        wait_for_created(switched_at + 20)  # and the apiserver keeps getting through afterwards
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert errors == []
    stored = {p["metadata"]["name"]: p for p in list_pods(api, ns)}
    assert set(created) <= stored.keys()
    not_injected = [name for name in created if not is_injected(stored[name])]
    assert not_injected == []
    assert server.served_serial() == new_serial
