"""Issue 5's proof against the real control plane: the install as users run it.

- The whole install (``sidecar-injector manifests | kubectl apply``) passes a server-side dry run,
  and its pods are admitted by Pod Security ``restricted`` (a privileged control is refused).
- ``certs --apply``, run exactly as the Job runs it and with the Job's own ServiceAccount token
  (so its RBAC is proven sufficient, and no wider), fills the empty Secret and the caBundle, then
  changes nothing on a second run, keeps its values across a re-apply of the manifests, renews a
  serving certificate near expiry under the same CA, and changes an expiring CA keeping the old
  one in the caBundle.
- The generated webhook configuration, with only its ``clientConfig`` rewritten to the local URL
  (as envtest does), is registered and called: pods in enabled namespaces get the sidecar, an
  opted-out pod, an unlabelled namespace and the injector's own namespace do not.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.client.rest import ApiException

from sidecar_injector.config import configload
from sidecar_injector.install import certs, manifests

from . import webhooks
from .controlplane import ControlPlane

pytestmark = pytest.mark.e2e

IMAGE = "registry.example/sidecar-injector:0.1.0"
UTC = datetime.UTC
_installs = itertools.count(1)


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("kubectl is missing in CI; the install test runs the commands users run", pytrace=False)
        pytest.skip("kubectl not installed")
    return path


def _render(namespace: str, **kw: Any) -> list[dict[str, Any]]:
    files = {"example.yaml": configload.BUILTIN_EXAMPLE.read_text()}
    return manifests.render(manifests.ManifestOptions(namespace=namespace, image=IMAGE, config_files=files, **kw))


def _run_kubectl(kubectl: str, cp: ControlPlane, args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl, "--kubeconfig", str(cp.kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _apply(kubectl: str, cp: ControlPlane, objects: list[dict[str, Any]], *extra: str) -> str:
    text = "".join(f"---\n{yaml.safe_dump(o, sort_keys=False)}" for o in objects)
    done = _run_kubectl(kubectl, cp, ["apply", *extra, "-f", "-"], text)
    assert done.returncode == 0, f"kubectl apply {' '.join(extra)} failed:\n{done.stderr}"
    return done.stderr


def _delete_install(cp: ControlPlane, objects: list[dict[str, Any]]) -> None:
    with cp.api_client() as client:
        rbac = kubernetes.client.RbacAuthorizationV1Api(client)
        admission = kubernetes.client.AdmissionregistrationV1Api(client)
        core = kubernetes.client.CoreV1Api(client)
        for o in objects:
            name = o["metadata"]["name"]
            calls: dict[str, Callable[[str], Any]] = {
                "MutatingWebhookConfiguration": admission.delete_mutating_webhook_configuration,
                "ClusterRole": rbac.delete_cluster_role,
                "ClusterRoleBinding": rbac.delete_cluster_role_binding,
                "Namespace": core.delete_namespace,
            }
            if o["kind"] in calls:
                try:
                    calls[o["kind"]](name)
                except ApiException as e:
                    if e.status != 404:
                        raise


def _raw(client: kubernetes.client.ApiClient, kind: str, name: str, namespace: str = "") -> dict[str, Any]:
    if kind == "Secret":
        resp = kubernetes.client.CoreV1Api(client).read_namespaced_secret(name, namespace, _preload_content=False)
    else:
        resp = kubernetes.client.AdmissionregistrationV1Api(client).read_mutating_webhook_configuration(
            name, _preload_content=False
        )
    data: dict[str, Any] = json.loads(resp.data)
    return data


def _secret(client: kubernetes.client.ApiClient, ns: str) -> tuple[dict[str, bytes], str]:
    obj = _raw(client, "Secret", "sidecar-injector-tls", ns)
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    return data, obj["metadata"]["resourceVersion"]


def _bundle(client: kubernetes.client.ApiClient) -> tuple[bytes, str]:
    obj = _raw(client, "MutatingWebhookConfiguration", "sidecar-injector")
    b64 = obj["webhooks"][0]["clientConfig"].get("caBundle", "")
    return base64.b64decode(b64), obj["metadata"]["resourceVersion"]


def _set_secret(client: kubernetes.client.ApiClient, ns: str, data: dict[str, bytes]) -> None:
    body = {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    kubernetes.client.CoreV1Api(client).patch_namespaced_secret(
        "sidecar-injector-tls", ns, body, _content_type="application/merge-patch+json"
    )


def _set_bundle(client: kubernetes.client.ApiClient, bundle: bytes) -> None:
    body = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(bundle).decode()}]
    kubernetes.client.AdmissionregistrationV1Api(client).patch_mutating_webhook_configuration(
        "sidecar-injector", body, _content_type="application/json-patch+json"
    )


def _service_account_kubeconfig(cp: ControlPlane, ns: str, sa: str, path: Path) -> Path:
    """A kubeconfig authenticating as ``ns/sa`` with a bound token, as the Job's pod would."""
    with cp.api_client() as client:
        token = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
            sa, ns, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                     "spec": {"expirationSeconds": 3600}},
        ).status.token  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)}}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "job", "context": {"cluster": "e2e", "user": sa, "namespace": ns}}],
        "current-context": "job",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _certs_apply(objects: list[dict[str, Any]], kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    """The Job's container command, verbatim from the manifests, plus the kubeconfig the pod's
    in-cluster configuration would otherwise supply."""
    [job] = [o for o in objects if o["kind"] == "Job"]
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "sidecar-injector"
    argv = [sys.executable, "-m", "sidecar_injector", *command[1:], "--kubeconfig", str(kubeconfig)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def _backdated(ca: tuple[bytes, bytes] | None, names: list[str], *, lived: int, left: int) -> tuple[bytes, bytes]:
    """A certificate that has lived ``lived`` days and has ``left`` days left: a CA if ``ca`` is
    None, else a serving certificate for ``names`` signed by it. (``certs`` cannot backdate.)"""
    now = datetime.datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if ca else "old CA")])
    if ca:
        issuer_cert = x509.load_pem_x509_certificate(ca[0])
        issuer_key = serialization.load_pem_private_key(ca[1], password=None)
        issuer = issuer_cert.subject
    else:
        issuer_key, issuer = key, subject
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=lived))
        .not_valid_after(now + datetime.timedelta(days=left))
    )  # fmt: skip
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    cert = builder.sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# --- the dry run and Pod Security --------------------------------------------------------------


def _pod_from(template: dict[str, Any], name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]},
            "spec": template["spec"]}  # fmt: skip


@pytest.mark.parametrize(
    ("ns", "variant"),
    [("si-dry-ignore", {}), ("si-dry-fail", {"failure_policy": "Fail"}), ("si-dry-cm", {"cert_manager": True})],
)
def test_whole_install_passes_a_server_side_dry_run(
    control_plane: ControlPlane, kubectl: str, ns: str, variant: dict[str, Any]
) -> None:
    objects = _render(ns, **variant)
    # cert-manager's CRDs are not installed in this control plane; everything else is checked.
    checked = [o for o in objects if not o["apiVersion"].startswith("cert-manager.io/")]
    assert len(checked) >= 8
    try:
        # A dry-run Namespace is not created, so the namespaced objects need the real one; the
        # pods' ServiceAccounts must exist too for the ServiceAccount admission plugin.
        _apply(kubectl, control_plane, [o for o in objects if o["kind"] in ("Namespace", "ServiceAccount")])
        warnings = _apply(kubectl, control_plane, checked, "--dry-run=server")
        # The namespace warns on (and enforces) Pod Security "restricted": no warning at all.
        assert "Warning" not in warnings, warnings

        # The control: the same check does flag a workload that breaks "restricted".
        [dep] = [o for o in checked if o["kind"] == "Deployment"]
        bad = json.loads(json.dumps(dep))
        bad["metadata"]["name"] = "privileged"
        bad["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
        flagged = _apply(kubectl, control_plane, [bad], "--dry-run=server")
        assert 'violate PodSecurity "restricted:latest"' in flagged and "NET_ADMIN" in flagged, flagged

        # Enforcement: every pod the install creates is admitted; a privileged one is refused.
        with control_plane.api_client() as client:
            core = kubernetes.client.CoreV1Api(client)
            templates = [o["spec"]["template"] for o in checked if o["kind"] in ("Deployment", "Job")]
            templates += [o["spec"]["jobTemplate"]["spec"]["template"] for o in checked if o["kind"] == "CronJob"]
            for i, template in enumerate(templates):
                core.create_namespaced_pod(ns, _pod_from(template, f"pod-{i}"), dry_run="All")
            with pytest.raises(ApiException) as refused:
                core.create_namespaced_pod(ns, _pod_from(bad["spec"]["template"], "bad"), dry_run="All")
            assert refused.value.status == 403 and "restricted" in (refused.value.body or "")
    finally:
        _delete_install(control_plane, objects[:1])


# --- certs --apply ------------------------------------------------------------------------------


@pytest.fixture
def installed(control_plane: ControlPlane, kubectl: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The bootstrap install, applied for real (its pods stay Pending: there is no kubelet)."""
    # A namespace of its own per test: a deleted one lingers in Terminating for a while.
    ns = f"si-certs-{next(_installs)}"
    objects = _render(ns)
    _apply(kubectl, control_plane, objects)
    try:
        yield ns, objects
    finally:
        _delete_install(control_plane, objects)


def test_certs_apply_is_idempotent_and_renews(
    control_plane: ControlPlane, kubectl: str, installed: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    ns, objects = installed
    names = certs.service_dns_names("sidecar-injector", ns)
    kubeconfig = _service_account_kubeconfig(control_plane, ns, "sidecar-injector-certs", tmp_path / "job.kubeconfig")

    with control_plane.api_client() as admin:
        data, _ = _secret(admin, ns)
        assert data == {}  # created empty by the manifests
        assert _bundle(admin)[0] == b""

        # 1. First run fills the Secret and the caBundle.
        first = _certs_apply(objects, kubeconfig)
        assert first.returncode == 0, first.stderr
        data, secret_rv = _secret(admin, ns)
        assert set(data) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
        assert certs.signed_by(data["tls.crt"], data["ca.crt"])
        cert = x509.load_pem_x509_certificate(data["tls.crt"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == names
        bundle, bundle_rv = _bundle(admin)
        assert bundle == data["ca.crt"]

        # 2. Second run: nothing to do, nothing written.
        second = _certs_apply(objects, kubeconfig)
        assert second.returncode == 0, second.stderr
        assert "nothing changed" in second.stdout
        assert _secret(admin, ns) == (data, secret_rv)
        assert _bundle(admin) == (bundle, bundle_rv)

        # 3. Re-applying the manifests (an upgrade) keeps what the Job wrote.
        _apply(kubectl, control_plane, [o for o in objects if o["kind"] != "Job"])
        assert _secret(admin, ns)[0] == data
        assert _bundle(admin)[0] == bundle

        # 4. A serving certificate with less than a third left is renewed under the same CA.
        ca = (data["ca.crt"], data["ca.key"])
        old_crt, old_key = _backdated(ca, names, lived=300, left=20)
        _set_secret(admin, ns, {"tls.crt": old_crt, "tls.key": old_key})
        renewed = _certs_apply(objects, kubeconfig)
        assert renewed.returncode == 0, renewed.stderr
        data2, _ = _secret(admin, ns)
        assert data2["ca.crt"] == data["ca.crt"] and data2["ca.key"] == data["ca.key"]
        assert data2["tls.crt"] not in (old_crt, data["tls.crt"])
        assert not certs.needs_renewal(data2["tls.crt"])
        assert _bundle(admin)[0] == bundle  # same CA: the caBundle did not move

        # 5. An expiring CA is replaced; the caBundle keeps the old CA while pods switch.
        old_ca = _backdated(None, ["old CA"], lived=3000, left=300)
        old_leaf = _backdated(old_ca, names, lived=10, left=300)
        _set_secret(admin, ns, {"ca.crt": old_ca[0], "ca.key": old_ca[1], "tls.crt": old_leaf[0],
                                "tls.key": old_leaf[1]})  # fmt: skip
        _set_bundle(admin, old_ca[0])
        rotated = _certs_apply(objects, kubeconfig)
        assert rotated.returncode == 0, rotated.stderr
        data3, _ = _secret(admin, ns)
        assert data3["ca.crt"] != old_ca[0]
        assert certs.signed_by(data3["tls.crt"], data3["ca.crt"])
        in_bundle = [c.public_bytes(serialization.Encoding.PEM)
                     for c in certs.bundle_certificates(_bundle(admin)[0])]  # fmt: skip
        assert in_bundle == [data3["ca.crt"], old_ca[0]]
        # And that is stable too.
        again = _certs_apply(objects, kubeconfig)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr

    # The Job's RBAC is that one Secret and that one configuration, nothing else.
    with control_plane.api_client() as admin:
        kubernetes.client.CoreV1Api(admin).create_namespaced_secret(
            ns, {"metadata": {"name": "other"}, "stringData": {"k": "v"}}
        )
    cfg = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    with kubernetes.client.ApiClient(cfg) as job_client:
        job_core = kubernetes.client.CoreV1Api(job_client)
        job_core.read_namespaced_secret("sidecar-injector-tls", ns)
        for forbidden in (
            lambda: job_core.read_namespaced_secret("other", ns),
            lambda: job_core.list_namespaced_secret(ns),
            lambda: job_core.delete_namespaced_secret("sidecar-injector-tls", ns),
            lambda: kubernetes.client.AdmissionregistrationV1Api(job_client).list_mutating_webhook_configuration(),
        ):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403


def test_concurrent_certs_apply_runs_converge(
    control_plane: ControlPlane, installed: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The Job and the CronJob (or two retries) may run at once on an empty Secret. Each write
    carries the resourceVersion it read, so the losers get 409 Conflict, re-read and re-plan;
    the end state must be consistent and stable."""
    ns, objects = installed
    kubeconfig = _service_account_kubeconfig(control_plane, ns, "sidecar-injector-certs", tmp_path / "job.kubeconfig")
    results: list[subprocess.CompletedProcess[str]] = []
    threads = [threading.Thread(target=lambda: results.append(_certs_apply(objects, kubeconfig))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert len(results) == 4 and all(r.returncode == 0 for r in results), [r.stderr for r in results]
    with control_plane.api_client() as admin:
        data, _ = _secret(admin, ns)
        bundle = _bundle(admin)[0]
    assert certs.signed_by(data["tls.crt"], data["ca.crt"])
    in_bundle = [c.public_bytes(serialization.Encoding.PEM) for c in certs.bundle_certificates(bundle)]
    # One CA: the losers adopted the winner's, none left a CA without a stored key behind.
    assert in_bundle == [data["ca.crt"]], [r.stderr for r in results]
    # No lost update: if more than one run wrote, the others met a conflict and re-planned.
    writers = sum("updated Secret" in r.stderr for r in results)
    assert writers == 1 or any("conflict" in r.stderr for r in results), [r.stderr for r in results]
    after = _certs_apply(objects, kubeconfig)
    assert after.returncode == 0 and "nothing changed" in after.stdout, after.stdout + after.stderr


def test_documented_rotate_upgrade_and_uninstall_commands(
    control_plane: ControlPlane, kubectl: str, installed: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The kubectl commands of the README's "Install on a cluster", run as written (the Job's pod is emulated by
    running its command, since nothing schedules pods here)."""
    ns, objects = installed
    kubeconfig = _service_account_kubeconfig(control_plane, ns, "sidecar-injector-certs", tmp_path / "job.kubeconfig")
    assert _certs_apply(objects, kubeconfig).returncode == 0
    with control_plane.api_client() as admin:
        data, _ = _secret(admin, ns)

        # Rotate: force a new serving certificate (same CA, caBundle unchanged).
        patch = '[{"op":"remove","path":"/data/tls.crt"}]'
        done = _run_kubectl(kubectl, control_plane, ["-n", ns, "patch", "secret", "sidecar-injector-tls",
                                                      "--type=json", f"-p={patch}"])  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _certs_apply(objects, kubeconfig).returncode == 0
        rotated, _ = _secret(admin, ns)
        assert rotated["ca.crt"] == data["ca.crt"] and rotated["tls.crt"] != data["tls.crt"]
        assert _bundle(admin)[0] == data["ca.crt"]

        # Rotate: force a new CA; the old one stays trusted.
        patch = '[{"op":"remove","path":"/data/ca.key"}]'
        done = _run_kubectl(kubectl, control_plane, ["-n", ns, "patch", "secret", "sidecar-injector-tls",
                                                      "--type=json", f"-p={patch}"])  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert _certs_apply(objects, kubeconfig).returncode == 0
        new_ca, _ = _secret(admin, ns)
        assert new_ca["ca.crt"] != data["ca.crt"] and certs.signed_by(new_ca["tls.crt"], new_ca["ca.crt"])
        in_bundle = [c.public_bytes(serialization.Encoding.PEM)
                     for c in certs.bundle_certificates(_bundle(admin)[0])]  # fmt: skip
        assert in_bundle == [new_ca["ca.crt"], data["ca.crt"]]

        # Upgrade: new image, the Job deleted first, everything applied again.
        upgraded = _render(ns, failure_policy="Fail")
        for o in upgraded:
            for c in _containers(o):
                c["image"] = "registry.example/sidecar-injector:0.2.0"
        manifest = tmp_path / "sidecar-injector.yaml"
        manifest.write_text("".join(f"---\n{yaml.safe_dump(o, sort_keys=False)}" for o in upgraded))
        for args in (["-n", ns, "delete", "job", "sidecar-injector-certs", "--ignore-not-found"],
                     ["apply", "-f", str(manifest)]):  # fmt: skip
            done = _run_kubectl(kubectl, control_plane, args)
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        assert _secret(admin, ns)[0] == new_ca  # the certificate survived the upgrade
        assert _bundle(admin)[0].startswith(new_ca["ca.crt"])
        deployment = kubernetes.client.AppsV1Api(admin).read_namespaced_deployment("sidecar-injector", ns)
        assert deployment.spec.template.spec.containers[0].image.endswith(":0.2.0")
        mwc = _raw(admin, "MutatingWebhookConfiguration", "sidecar-injector")
        assert mwc["webhooks"][0]["failurePolicy"] == "Fail"

        # Uninstall: the webhook configuration first, then the rest.
        for args in (["delete", "mutatingwebhookconfiguration", "sidecar-injector"],
                     ["delete", "-f", str(manifest), "--ignore-not-found", "--wait=false"]):  # fmt: skip
            done = _run_kubectl(kubectl, control_plane, args)
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
        with pytest.raises(ApiException) as gone:
            rbac.read_cluster_role("sidecar-injector-certs")
        assert gone.value.status == 404


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
    return list(template["spec"]["containers"]) if template else []


def test_certs_apply_explains_a_missing_secret(control_plane: ControlPlane, tmp_path: Path) -> None:
    argv = [
        sys.executable,
        "-m",
        "sidecar_injector",
        "certs",
        "--apply",
        "--service",
        "x",
        "--namespace",
        "no-such-ns",
        "--secret",
        "s",
        "--webhook-config",
        "w",
        "--kubeconfig",
        str(control_plane.kubeconfig),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "sidecar-injector: error: Secret no-such-ns/s does not exist; apply the manifests first (they create "
        "it empty, so this job needs no right to create Secrets)"
    ]


# --- the generated webhook configuration, registered and called --------------------------------


def test_generated_webhook_configuration_is_registered_and_called(
    control_plane: ControlPlane, injector: Callable[..., Any]
) -> None:
    own_ns = "si-own"
    server = injector(configload.BUILTIN_EXAMPLE)
    [generated] = [o for o in _render(own_ns) if o["kind"] == "MutatingWebhookConfiguration"]
    body = webhooks.rewrite_to_url(generated, server.url, server.ca_cert)
    assert {k: v for k, v in body["webhooks"][0].items() if k != "clientConfig"} == {
        k: v for k, v in generated["webhooks"][0].items() if k != "clientConfig"
    }
    enabled = {"sidecar-injector.io/injection": "enabled"}
    control_plane.create_namespace("si-enabled", enabled)
    control_plane.create_namespace("si-plain", {})
    control_plane.create_namespace(own_ns, enabled)  # labelled, yet excluded by name
    with control_plane.api_client() as client:
        admission = kubernetes.client.AdmissionregistrationV1Api(client)
        admission.create_mutating_webhook_configuration(body)
        try:
            hook = webhooks.Hook(control_plane, body["metadata"]["name"], "install")
            hook.wait_active("si-enabled")

            got = webhooks.create_pod(client, "si-enabled", webhooks.pod("app"))
            assert webhooks.is_injected(got)
            assert "hello-sidecar" in [c["name"] for c in got["spec"]["containers"]]
            assert got["metadata"]["labels"]["foo"] == "bar"

            opted_out = webhooks.pod("opted-out", labels={"sidecar-injector.io/inject": "false"})
            assert not webhooks.is_injected(webhooks.create_pod(client, "si-enabled", opted_out))
            assert not webhooks.is_injected(webhooks.create_pod(client, "si-plain", webhooks.pod("plain")))
            assert not webhooks.is_injected(webhooks.create_pod(client, own_ns, webhooks.pod("own")))
        finally:
            admission.delete_mutating_webhook_configuration(body["metadata"]["name"])
            # Wait until the apiserver stops calling it, so no later test meets this configuration.
            deadline = time.monotonic() + 30
            while webhooks.is_injected(webhooks.create_pod(client, "si-enabled", webhooks.pod("after"), dry_run=True)):
                assert time.monotonic() < deadline, "deleted configuration still called after 30s"
                time.sleep(0.1)
