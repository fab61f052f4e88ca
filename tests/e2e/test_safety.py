"""Issue 8 against the real apiserver: what the webhook emits is never refused, and it stays
out of pods where it would harm.

- A template whose rendered value the apiserver would refuse (a label value with a space) is
  an injection error answered per ``--on-error``: with ``failurePolicy: Ignore`` the pod is
  created, uninjected; it is never refused with 422 because of us. The same config injects a
  pod whose value is good, and a template in an integer field is stored as an integer.
- A hostNetwork pod is created without the iptables init container.
- A pod that runs to completion gets the regular sidecar as a native one, so it can complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .webhooks import create_pod, is_injected, pod

pytestmark = pytest.mark.e2e

CONFIG = {
    "apiVersion": "sidecar-injector.io/v1alpha1",
    "kind": "SidecarConfig",
    "metadata": {"name": "mesh"},
    "spec": {
        "injectByDefault": True,
        "labels": {"team": "{{ annotations['team'] | default('core') }}"},
        "initContainers": [{
            "name": "mesh-init", "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
        }],
        "containers": [{
            "name": "mesh-proxy", "image": "registry.k8s.io/pause:3.10",
            "ports": [{"name": "proxy", "containerPort": "{{ annotations['proxy-port'] | default('15001') }}"}],
        }],
    },
}


def test_what_the_apiserver_would_refuse_is_never_emitted(
    injector: Any, register_webhook: Any, api: Any, tmp_path: Path
) -> None:
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    hook = register_webhook(injector(config), failure_policy="Ignore")
    ns = hook.namespace("safety")

    good = create_pod(api, ns, pod("good", annotations={"team": "payments", "proxy-port": "15006"}))
    assert is_injected(good)
    assert good["metadata"]["labels"]["team"] == "payments"
    proxy = next(c for c in good["spec"]["containers"] if c["name"] == "mesh-proxy")
    assert proxy["ports"][0]["containerPort"] == 15006  # a template in an integer field, stored as one

    # Emitting team="platform team" would get this pod refused with 422: the webhook answers
    # the injection error instead (--on-error fail: HTTP 500, failurePolicy Ignore admits it).
    bad = create_pod(api, ns, pod("bad-label", annotations={"team": "platform team"}))
    assert not is_injected(bad)
    assert [c["name"] for c in bad["spec"]["containers"]] == ["app"]
    bad_port = create_pod(api, ns, pod("bad-port", annotations={"proxy-port": "99999"}))
    assert not is_injected(bad_port)

    host = pod("host-network")
    host["spec"]["hostNetwork"] = True
    stored = create_pod(api, ns, host)
    assert not is_injected(stored)
    assert "initContainers" not in stored["spec"]

    job = pod("job")
    job["spec"]["restartPolicy"] = "Never"
    stored = create_pod(api, ns, job)
    assert is_injected(stored)
    assert [c["name"] for c in stored["spec"]["containers"]] == ["app"]
    inits = {c["name"]: c for c in stored["spec"]["initContainers"]}
    assert list(inits) == ["mesh-init", "mesh-proxy"]
    assert inits["mesh-proxy"]["restartPolicy"] == "Always" and "restartPolicy" not in inits["mesh-init"]
