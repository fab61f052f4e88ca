"""Fixtures of the end-to-end suite: the control plane (one per session), our webhook server (one
per use, in a test's temporary directory) and webhook registration.

When the Kubernetes binaries are missing and cannot be built, the suite is skipped with the reason
locally, but FAILS when ``CI=true``: in CI a skipped e2e suite would hide exactly what it exists to
catch.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import binaries, webhooks
from .controlplane import ControlPlane, tail
from .injector import InjectorServer, make_ca

DATA = Path(__file__).parent / "data"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")

_active: ControlPlane | None = None
_servers: list[InjectorServer] = []  # those of the running test, for failure reports


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything in this directory talks to the real control plane, test_install.py included.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _active is not None:
        # The logs are kept after a failed session; say where they are right at the failure.
        lines = [f"{name}: {path}" for name, path in _active.log_files().items()]
        report.sections.append(("control-plane logs (kept after a failed run)", "\n".join(lines)))
    if report.failed:
        for server in _servers:
            report.sections.append((f"sidecar-injector serve log ({server.log})", tail(server.log, 40)))


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"e2e prerequisites missing in CI (a skip would hide the e2e suite): {reason}", pytrace=False)
    pytest.skip(f"e2e: {reason}")


@pytest.fixture(scope="session")
def k8s_binaries(request: pytest.FixtureRequest) -> dict[str, Path]:
    """The pinned binaries: given (KUBEBUILDER_ASSETS / TEST_ASSET_*), cached, or built now."""
    found = binaries.find()
    if found is not None:
        return found
    if shutil.which("go") is None:
        _unavailable(
            "kube-apiserver/etcd/kube-controller-manager not found and Go is not installed; run "
            "`python tests/e2e/binaries.py` on a machine with Go, or set KUBEBUILDER_ASSETS"
        )
    # A cold build takes minutes: let its progress reach the terminal instead of the capture.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    uncaptured = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    try:
        with uncaptured:
            print("\n[e2e] building the Kubernetes binaries (a cold build takes minutes)", file=sys.stderr)
            return binaries.build()
    except binaries.BinariesUnavailable as e:
        if IN_CI:
            pytest.fail(f"building the Kubernetes binaries failed: {e}", pytrace=False)
        pytest.skip(f"e2e: building the Kubernetes binaries failed: {e}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def control_plane(k8s_binaries: dict[str, Path], request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A running etcd + kube-apiserver + kube-controller-manager for the whole session.

    Attributes: ``kubeconfig`` (path, admin), ``server`` (URL), ``ca_file``, ``client_cert_file``,
    ``client_key_file``; methods ``api_client()`` (a ``kubernetes.client.ApiClient``),
    ``create_namespace(name, labels)`` (waits for its ``default`` ServiceAccount),
    ``wait_for_service_account(ns)``, ``check_alive()``, ``log_files()``.
    """
    global _active
    cp = ControlPlane(k8s_binaries).start()
    _active = cp
    try:
        yield cp
    finally:
        _active = None
        cp.stop(keep_logs=request.session.testsfailed > 0)


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[Any]:
    """An admin ``kubernetes.client.ApiClient`` for one test."""
    with control_plane.api_client() as client:
        yield client


@pytest.fixture(scope="session")
def webhook_ca() -> tuple[bytes, bytes]:
    """(cert_pem, key_pem) of the CA that signs our webhook's serving certificates."""
    return make_ca()


@pytest.fixture
def injector(tmp_path: Path, webhook_ca: tuple[bytes, bytes]) -> Iterator[Callable[..., InjectorServer]]:
    """Factory: ``injector("article.yaml")`` starts ``sidecar-injector serve`` on that config
    (a file under tests/e2e/data, or any path) and stops it after the test."""
    servers: list[InjectorServer] = []
    _servers.clear()

    def start(config: str | Path) -> InjectorServer:
        path = Path(config) if Path(config).is_absolute() else DATA / config
        workdir = tmp_path / f"injector{len(servers)}"
        workdir.mkdir()
        server = InjectorServer(path, workdir, webhook_ca)
        servers.append(server)
        _servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
    _servers.clear()


@pytest.fixture
def register_webhook(control_plane: ControlPlane) -> Iterator[Callable[..., webhooks.Hook]]:
    """Factory: ``register_webhook(server_or_url, ca_bundle=None, failure_policy="Fail", ...)``
    creates a MutatingWebhookConfiguration, waits until the apiserver calls it, and deletes it
    after the test. Returns a :class:`webhooks.Hook`; ``hook.namespace("x")`` makes an enabled
    namespace."""
    hooks: list[webhooks.Hook] = []

    def register(target: InjectorServer | str, ca_bundle: bytes | None = None, **kwargs: Any) -> webhooks.Hook:
        bundle: bytes | None
        if isinstance(target, InjectorServer):
            url, bundle = target.url, target.ca_cert
        else:
            url, bundle = target, ca_bundle
        assert bundle is not None, "a URL needs its ca_bundle"
        hook = webhooks.register(control_plane, url, bundle, **kwargs)
        hooks.append(hook)
        return hook

    yield register
    for hook in hooks:
        hook.delete()
