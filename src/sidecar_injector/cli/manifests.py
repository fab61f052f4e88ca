"""``sidecar-injector manifests``: print the install, ready for ``kubectl apply -f -``.

With ``--kustomize DIR`` it writes the same objects as a kustomize base instead (one file per
object, the SidecarConfig files under ``config/`` fed to a configMapGenerator), which is how
``deploy/`` in this repository is made.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sidecar_injector import configload, manifests, monitoring
from sidecar_injector.core.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "manifests",
        help="print the Kubernetes objects that install the injector",
        description=(
            "Print every object needed to run the injector (Namespace, ServiceAccounts, config "
            "ConfigMap, Deployment, Service, PodDisruptionBudget, NetworkPolicy, certificate Job "
            "and its RBAC or cert-manager resources, MutatingWebhookConfiguration) as YAML for "
            "`kubectl apply -f -`."
        ),
    )
    p.add_argument("-n", "--namespace", default="sidecar-injector", metavar="NS", help="default: sidecar-injector")
    p.add_argument("--image", required=True, metavar="IMAGE", help="the injector's container image")
    p.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="PATH",
        help="a SidecarConfig YAML file, or a directory of them (default: the built-in example)",
    )
    p.add_argument(
        "--failure-policy",
        choices=manifests.FAILURE_POLICIES,
        default="Ignore",
        help="Ignore (default): pods are created without the sidecar while the injector is down; "
        "Fail: pod creation fails instead",
    )
    p.add_argument(
        "--cert-manager",
        action="store_true",
        help="use cert-manager Certificates and CA injection instead of the bootstrap Job",
    )
    p.add_argument("--name", default="sidecar-injector", help="base name of the objects")
    p.add_argument("--replicas", type=int, default=2, metavar="N", help="webhook replicas (default 2)")
    p.add_argument(
        "--priority-class-name",
        default="system-cluster-critical",
        metavar="NAME",
        help="the webhook pods' PriorityClass (default system-cluster-critical; '' for none)",
    )
    p.add_argument(
        "--monitoring",
        action="store_true",
        help="also print the metrics Service, ServiceMonitor and PrometheusRule (Prometheus Operator)",
    )
    p.add_argument(
        "--kustomize",
        type=Path,
        metavar="DIR",
        help="write a kustomize base to DIR instead of printing (and the monitoring component in DIR/monitoring/)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_files = read_config_files(args.config)
    opts = manifests.ManifestOptions(
        namespace=args.namespace,
        image=args.image,
        config_files=config_files,
        failure_policy=args.failure_policy,
        cert_manager=args.cert_manager,
        name=args.name,
        replicas=args.replicas,
        priority_class_name=args.priority_class_name,
    )
    objects = manifests.render(opts)
    if args.kustomize:
        write_kustomize(args.kustomize, objects, config_files, monitoring.render(opts))
    else:
        print(dump_all(objects + (monitoring.render(opts) if args.monitoring else [])), end="")
    return 0


def read_config_files(path: Path | None) -> dict[str, str]:
    """ConfigMap key -> raw text of each SidecarConfig file, after the server's own loader
    accepted them: a config that would not load is refused here, before it reaches a cluster."""
    path = path or configload.BUILTIN_EXAMPLE
    configload.load_configs(path)
    files: dict[str, str] = {}
    for p in configload.config_files(path):
        try:
            files[p.name] = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: cannot read: {e}") from None
    return files


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so the embedded SidecarConfig stays readable; no
    anchors and aliases (``&id001``/``*id001``) for objects used twice: each is written out."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        # Trailing spaces on a line would force PyYAML back to quoted style; fine either way.
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def dump_all(objects: Iterable[Any]) -> str:
    return "".join(f"---\n{dump(o)}" for o in objects)


def _file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def kustomize_files(objects: list[dict[str, Any]], config_files: dict[str, str],
                    monitoring_objects: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Relative path -> text of a kustomize base holding ``objects`` (and, under ``monitoring/``,
    a kustomize component holding ``monitoring_objects``, for overlays to add with ``components:``)."""
    files: dict[str, str] = {}
    resources: list[str] = []
    generator: dict[str, Any] | None = None
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            # The SidecarConfig files stay plain files GitOps users edit; kustomize builds the
            # ConfigMap, without a hash suffix because the server reloads it in place.
            meta = obj["metadata"]
            generator = {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "files": [f"config/{k}" for k in sorted(config_files)],
                "options": {"labels": dict(meta["labels"]), "disableNameSuffixHash": True},
            }
            continue
        name = _file_name(obj)
        files[name] = dump(obj)
        resources.append(name)
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    if generator:
        kustomization["configMapGenerator"] = [generator]
    files["kustomization.yaml"] = (
        "# Generated by `sidecar-injector manifests --kustomize`; regenerate rather than edit, except\n"
        "# the files under config/, which hold the SidecarConfig documents.\n" + dump(kustomization)
    )
    for key, text in config_files.items():
        files[f"config/{key}"] = text
    if monitoring_objects:
        component: dict[str, Any] = {
            "apiVersion": "kustomize.config.k8s.io/v1alpha1",
            "kind": "Component",
            "resources": [_file_name(o) for o in monitoring_objects],
        }
        files["monitoring/kustomization.yaml"] = (
            "# Generated by `sidecar-injector manifests --kustomize`. A kustomize component: add it to an\n"
            "# overlay with `components: [<path to deploy>/monitoring]` (needs the Prometheus Operator CRDs).\n"
            + dump(component)
        )
        for obj in monitoring_objects:
            files[f"monitoring/{_file_name(obj)}"] = dump(obj)
    return files


def write_kustomize(out_dir: Path, objects: list[dict[str, Any]], config_files: dict[str, str],
                    monitoring_objects: list[dict[str, Any]] | None = None) -> None:
    try:
        for rel, text in kustomize_files(objects, config_files, monitoring_objects).items():
            path = out_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, "utf-8")
            os.replace(tmp, path)
    except OSError as e:
        raise manifests.ManifestError(f"cannot write the kustomize base to {out_dir}: {e}") from None
