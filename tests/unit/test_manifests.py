"""The install manifests: schema-valid, hardened as issue 5 asks, and in sync with deploy/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sidecar_injector.cli import main
from sidecar_injector.cli import manifests as cli_manifests
from sidecar_injector.config import configload
from sidecar_injector.core.selector import parse_selector
from sidecar_injector.install import manifests

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# deploy/ is exactly: sidecar-injector manifests --image sidecar-injector:0.1.0 --kustomize deploy
DEPLOY_IMAGE = "sidecar-injector:0.1.0"
KUBE_VERSION = "1.37.0"
NS = "injector-system"
EXAMPLE = {"example.yaml": configload.BUILTIN_EXAMPLE.read_text()}
VARIANTS = [
    pytest.param({}, id="bootstrap-ignore"),
    pytest.param({"failure_policy": "Fail"}, id="bootstrap-fail"),
    pytest.param({"cert_manager": True}, id="cert-manager"),
]


def render(**kw: Any) -> list[dict[str, Any]]:
    args: dict[str, Any] = {"namespace": NS, "image": "reg.example/si:1.0", "config_files": EXAMPLE}
    args.update(kw)
    return manifests.render(manifests.ManifestOptions(**args))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            out.append((f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_core_object_validates_strictly_against_the_kubernetes_schema(variant: dict[str, Any]) -> None:
    for obj in render(**variant):
        if obj["apiVersion"].startswith("cert-manager.io/"):
            continue  # not in the Kubernetes schemas; checked by structure below
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_cert_manager_resources_by_structure() -> None:
    objects = render(cert_manager=True)
    issuers = {o["metadata"]["name"]: o for o in by_kind(objects, "Issuer")}
    certificates = {o["metadata"]["name"]: o for o in by_kind(objects, "Certificate")}
    assert set(issuers) == {"sidecar-injector-selfsigned", "sidecar-injector-ca"}
    assert issuers["sidecar-injector-selfsigned"]["spec"] == {"selfSigned": {}}
    assert issuers["sidecar-injector-ca"]["spec"] == {"ca": {"secretName": "sidecar-injector-ca"}}
    ca, tls = certificates["sidecar-injector-ca"]["spec"], certificates["sidecar-injector-tls"]["spec"]
    assert ca["isCA"] is True and ca["issuerRef"]["name"] == "sidecar-injector-selfsigned"
    assert tls["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "sidecar-injector-ca"}
    assert tls["secretName"] == "sidecar-injector-tls"
    assert tls["dnsNames"][0] == f"sidecar-injector.{NS}.svc"
    assert set(tls["usages"]) == {"server auth", "digital signature"}
    for spec in (ca, tls):  # cert-manager durations are Go durations in hours here
        assert spec["duration"].endswith("h") and spec["renewBefore"].endswith("h")
        assert int(spec["renewBefore"][:-1]) * 3 == int(spec["duration"][:-1])
        assert spec["privateKey"]["algorithm"] == "ECDSA"
    mwc = one(objects, "MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NS}/sidecar-injector-tls"}
    # No bootstrap machinery alongside cert-manager.
    assert not by_kind(objects, "Job") and not by_kind(objects, "Secret")
    assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == ["sidecar-injector-server"]  # its Lease


@pytest.mark.parametrize("variant", VARIANTS)
def test_webhook_configuration_is_the_safe_one(variant: dict[str, Any]) -> None:
    mwc = one(render(**variant), "MutatingWebhookConfiguration")
    assert mwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    [hook] = mwc["webhooks"]
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["sideEffects"] == "None"
    assert 1 <= hook["timeoutSeconds"] <= 5
    assert hook["matchPolicy"] == "Equivalent"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == variant.get("failure_policy", "Ignore")
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["clientConfig"] == {
        "service": {"name": "sidecar-injector", "namespace": NS, "path": "/mutate", "port": 443}
    }


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    # The project's own selector parser, which implements Kubernetes label-selector semantics.
    parsed = parse_selector(selector, "test")
    return parsed is None or parsed.matches(labels)


@pytest.mark.parametrize(
    ("namespace", "labels", "expected"),
    [
        ("apps", {"sidecar-injector.io/injection": "enabled"}, True),
        ("apps", {}, False),
        ("apps", {"sidecar-injector.io/injection": "disabled"}, False),
        *[
            (ns, {"sidecar-injector.io/injection": "enabled"}, False)
            for ns in ("kube-system", "kube-public", "kube-node-lease", NS)
        ],
    ],
)
def test_namespace_selector(namespace: str, labels: dict[str, str], expected: bool) -> None:
    [hook] = one(render(), "MutatingWebhookConfiguration")["webhooks"]
    all_labels = {"kubernetes.io/metadata.name": namespace, **labels}
    assert _matches(hook["namespaceSelector"], all_labels) is expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, True),
        ({"sidecar-injector.io/inject": "true"}, True),
        ({"sidecar-injector.io/inject": "false"}, False),
    ],
)
def test_object_selector_lets_a_pod_opt_out(labels: dict[str, str], expected: bool) -> None:
    [hook] = one(render(), "MutatingWebhookConfiguration")["webhooks"]
    assert _matches(hook["objectSelector"], labels) is expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_meets_pod_security_restricted(variant: dict[str, Any]) -> None:
    specs = pod_specs(render(**variant))
    assert specs
    for where, spec in specs:
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] > 10000, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), where
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"configMap", "secret", "emptyDir", "projected"}, where
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged") is not True, where
            assert "ports" not in c or all("hostPort" not in p for p in c["ports"]), where
            assert {"requests", "limits"} <= set(c["resources"]), where
    ns = one(render(**variant), "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_deployment_runs_the_server_as_documented() -> None:
    objects = render()
    dep = one(objects, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True  # it watches SidecarConfig objects
    assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}
    [c] = pod["containers"]
    assert c["image"] == "reg.example/si:1.0"
    assert c["args"] == [
        "serve",
        "--config",
        "/etc/sidecar-injector/config",
        "--config-source",
        "both",
        "--tls-cert",
        "/etc/sidecar-injector/tls/tls.crt",
        "--tls-key",
        "/etc/sidecar-injector/tls/tls.key",
        "--port",
        "8443",
        "--metrics-port",
        "8080",
    ]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "metrics": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "scheme": "HTTP", "port": "metrics"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "scheme": "HTTP", "port": "metrics"}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == one(objects, "ConfigMap")["metadata"]["name"]
    assert mounts["config"] == "/etc/sidecar-injector/config"
    assert mounts["tls"] == "/etc/sidecar-injector/tls"
    # The CA key, kept in the Secret for renewals, is not mounted into the server.
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    svc = one(objects, "Service")
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": spec["selector"]}
    # Our own pods carry the opt-out label too.
    for _, pod_spec_owner in [("d", dep["spec"]["template"])]:
        assert pod_spec_owner["metadata"]["labels"]["sidecar-injector.io/inject"] == "false"


def test_certificate_job_rbac_is_one_secret_and_one_webhook_configuration() -> None:
    objects = render()
    [role] = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == "sidecar-injector-certs"]
    [cluster_role] = [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == "sidecar-injector-certs"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["sidecar-injector-tls"],
            "verbs": ["get", "update", "patch"],
        }
    ]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "resourceNames": [one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]],
            "verbs": ["get", "update", "patch"],
        }
    ]
    secret = one(objects, "Secret")
    # No declared data: kubectl apply would reset declared keys on every upgrade.
    assert secret["type"] == "Opaque" and "data" not in secret and "stringData" not in secret
    for kind in ("Job", "CronJob"):
        [(_, spec)] = [(w, s) for w, s in pod_specs(objects) if w.startswith(kind + "/")]
        assert spec["serviceAccountName"] == "sidecar-injector-certs"
        assert spec["containers"][0]["command"] == [
            "sidecar-injector",
            "certs",
            "--apply",
            "--service",
            "sidecar-injector",
            "--namespace",
            NS,
            "--secret",
            "sidecar-injector-tls",
            "--webhook-config",
            "sidecar-injector",
        ]
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in objects]
    # Apply order: the CRDs (cluster-wide, no namespace needed), then the namespace first of the
    # rest; the Job after what it patches.
    assert names[2] == f"Namespace/{NS}"
    assert names.index("Job/sidecar-injector-certs") > names.index("MutatingWebhookConfiguration/sidecar-injector")
    assert names.index("Job/sidecar-injector-certs") > names.index("ValidatingWebhookConfiguration/sidecar-injector")


def test_config_map_embeds_the_raw_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(EXAMPLE["example.yaml"])
    (tmp_path / "a.yml").write_text(EXAMPLE["example.yaml"].replace("hello-sidecar", "other-sidecar"))
    (tmp_path / "notes.txt").write_text("ignored")
    files = cli_manifests.read_config_files(tmp_path)
    assert list(files) == ["a.yml", "b.yaml"]
    cm = one(render(config_files=files), "ConfigMap")
    assert cm["data"] == {
        "a.yml": (tmp_path / "a.yml").read_text(),
        "b.yaml": (tmp_path / "b.yaml").read_text(),
    }


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"namespace": "Bad_NS"}, "not a valid Kubernetes name"),
        ({"image": ""}, "not a container image"),
        ({"image": "a b"}, "not a container image"),
        ({"failure_policy": "Sometimes"}, "failure policy"),
        ({"replicas": 0}, "replicas"),
        ({"config_files": {}}, "no SidecarConfig"),
        ({"config_files": {"a/b.yaml": "x"}}, "ConfigMap key"),
        ({"config_files": {"big.yaml": "x" * 1_100_000}}, "1 MiB"),
    ],
)
def test_bad_options_are_clear_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(manifests.ManifestError, match=message):
        render(**kw)


def test_cli_prints_yaml_for_kubectl_and_refuses_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifests", "--namespace", NS, "--image", "x:1", "--failure-policy", "Fail"]) == 0
    printed = list(yaml.safe_load_all(capsys.readouterr().out))
    assert printed == render(image="x:1", failure_policy="Fail")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: sidecar-injector.io/v1alpha1\nkind: SidecarConfig\nmetadata: {name: x}\nspec: 3\n")
    assert main(["manifests", "--image", "x:1", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sidecar-injector: error: ") and str(bad) in err and err.count("\n") == 1
    assert main(["manifests", "--image", "x:1", "--config", str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def _deploy_objects_by_hand() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy` applies, read without kubectl: the listed resources plus the
    ConfigMap the generator builds from the config files."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    objects = [yaml.safe_load((DEPLOY / r).read_text()) for r in kustomization["resources"]]
    for gen in kustomization.get("configMapGenerator", []):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": gen["name"],
                    "namespace": gen["namespace"],
                    "labels": gen["options"]["labels"],
                },
                "data": {Path(f).name: (DEPLOY / f).read_text() for f in gen["files"]},
            }
        )
    return objects


def _key(o: dict[str, Any]) -> tuple[str, str, str]:
    return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])


def test_deploy_base_is_in_sync_with_the_manifests_command(tmp_path: Path) -> None:
    regenerate = f"sidecar-injector manifests --image {DEPLOY_IMAGE} --kustomize deploy"
    assert main(["manifests", "--image", DEPLOY_IMAGE, "--kustomize", str(tmp_path)]) == 0
    want = {str(p.relative_to(tmp_path)): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    have = {str(p.relative_to(DEPLOY)): p.read_text() for p in DEPLOY.rglob("*") if p.is_file()}
    assert have == want, f"deploy/ is stale: run `{regenerate}` (and remove files it no longer writes)"
    expected = manifests.render(
        manifests.ManifestOptions(namespace="sidecar-injector", image=DEPLOY_IMAGE, config_files=EXAMPLE)
    )
    assert sorted(_deploy_objects_by_hand(), key=_key) == sorted(expected, key=_key)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kubectl_kustomize_builds_the_same_objects() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True)
    expected = manifests.render(
        manifests.ManifestOptions(namespace="sidecar-injector", image=DEPLOY_IMAGE, config_files=EXAMPLE)
    )
    assert sorted(yaml.safe_load_all(built.stdout), key=_key) == sorted(expected, key=_key)


def test_the_commands_in_the_manifests_are_ones_the_cli_accepts() -> None:
    from sidecar_injector.cli import build_parser

    objects = render()
    [dep_container] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    serve = build_parser().parse_args(dep_container["args"])
    assert (serve.command, serve.port, serve.metrics_port) == ("serve", 8443, 8080)
    assert serve.tls_cert == "/etc/sidecar-injector/tls/tls.crt"
    job_command = one(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job_command[0] == "sidecar-injector"  # the console script the image puts on PATH
    job = build_parser().parse_args(job_command[1:])
    assert (job.command, job.apply, job.secret, job.webhook_config) == (
        "certs",
        True,
        "sidecar-injector-tls",
        "sidecar-injector",
    )


def test_sidecarconfig_api_objects() -> None:
    """Issue 10: the CRDs, the validating webhook (Fail, the two kinds only, same name and caBundle
    handling as the mutating one), the server's RBAC and the aggregated roles."""
    objects = render()
    crds = by_kind(objects, "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == ["clustersidecarconfigs.sidecar-injector.io",
                                                     "sidecarconfigs.sidecar-injector.io"]
    assert objects[:2] == crds  # before anything that could create such objects
    [vwc] = by_kind(objects, "ValidatingWebhookConfiguration")
    [hook] = vwc["webhooks"]
    assert vwc["metadata"]["name"] == one(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    assert hook["failurePolicy"] == "Fail" and hook["clientConfig"]["service"]["path"] == "/validate-config"
    assert hook["rules"] == [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["sidecar-injector.io"],
                              "apiVersions": ["v1alpha1"], "resources": ["clustersidecarconfigs", "sidecarconfigs"],
                              "scope": "*"}]
    roles = {r["metadata"]["name"]: r for r in by_kind(objects, "ClusterRole")}
    server = roles["sidecar-injector-server"]["rules"]
    assert {v for r in server for v in r["verbs"]} <= {"get", "list", "watch", "update", "patch"}
    assert all(res.endswith("/status") for r in server if "patch" in r["verbs"] for res in r["resources"])
    edit = roles["sidecar-injector-sidecarconfigs-edit"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["rules"][0]["resources"] == ["sidecarconfigs"]  # never the cluster kind
    assert not any("clustersidecarconfigs" in res for r in roles.values()
                   if any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in r["metadata"]["labels"])
                   for rule in r["rules"] for res in rule["resources"])
    env = {e["name"] for e in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"POD_NAMESPACE", "POD_NAME"}
    cm = render(cert_manager=True)
    [vwc] = by_kind(cm, "ValidatingWebhookConfiguration")
    assert vwc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NS}/sidecar-injector-tls"}
