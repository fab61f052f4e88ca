"""``sidecar-injector manifests``: print the install, ready for ``kubectl apply -f -``.

With ``--kustomize DIR`` it writes the same objects as a kustomize base instead (one file per
object, the SidecarConfig files under ``config/`` fed to a configMapGenerator), which is how
``deploy/`` in this repository is made.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from sidecar_injector.config import configload
from sidecar_injector.core.errors import ConfigError
from sidecar_injector.install import manifests, monitoring


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
        "--mode",
        choices=manifests.MODES,
        default="webhook",
        help="webhook (default): the server injects every config; policy: only a MutatingAdmissionPolicy "
        "and binding (no server, Service, certificates or webhook; the configs that do not compile are "
        "named and refused); hybrid: the policy for the configs it can deliver, the webhook for the rest "
        "(docs/policy.md)",
    )
    p.add_argument(
        "--failure-policy",
        choices=manifests.FAILURE_POLICIES,
        default=None,
        help="the webhook's: Ignore (default): pods are created without the sidecar while the injector is "
        "down; Fail: pod creation fails instead. The policy's: Fail by default (docs/policy.md)",
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
    mode, policies, config_files = _delivery(args, config_files)
    opts = manifests.ManifestOptions(
        namespace=args.namespace,
        image=args.image,
        config_files=config_files,
        failure_policy=args.failure_policy or "Ignore",
        mode=mode,
        policies=tuple(policies),
        cert_manager=args.cert_manager,
        name=args.name,
        replicas=args.replicas,
        priority_class_name=args.priority_class_name,
    )
    objects = manifests.render(opts)
    if mode == "policy":
        if args.monitoring:
            raise manifests.ManifestError("--monitoring needs the webhook server (--mode webhook or hybrid)")
        if args.kustomize:
            write_kustomize(args.kustomize, objects, {})
        else:
            print(policy_header(args.namespace) + dump_all(objects), end="")
        return 0
    if args.kustomize:
        write_kustomize(args.kustomize, objects, config_files, monitoring.render(opts))
    else:
        print(dump_all(objects + (monitoring.render(opts) if args.monitoring else [])), end="")
    return 0


def policy_header(namespace: str) -> str:
    return (f"# sidecar-injector --mode policy: no server, Service, certificates or webhook. Injection\n"
            f"# happens in namespaces labelled {manifests.NAMESPACE_LABEL}=enabled (never kube-system,\n"
            f"# kube-public, kube-node-lease): kubectl label namespace NS {manifests.NAMESPACE_LABEL}=enabled\n")


def _delivery(args: argparse.Namespace, config_files: dict[str, str]) -> tuple[str, list[Any], dict[str, str]]:
    """(mode, policy objects, the ConfigMap's files) for ``--mode``; hybrid with nothing to split
    becomes the policy or the webhook install, said on stderr."""
    mode = getattr(args, "mode", "webhook")
    if mode == "webhook":
        return mode, [], config_files
    from sidecar_injector import policy

    configs = configload.load_configs(args.config or configload.BUILTIN_EXAMPLE)
    fp = args.failure_policy or "Fail"
    if mode == "policy":
        compiled = policy.compile_set(configs, name=args.name, failure_policy=fp,
                                      selector=policy.namespace_selector(configs.prefix))
        if compiled.unsupported:
            lines = "\n".join(f"  webhook-only: {u}" for u in compiled.unsupported)
            raise manifests.ManifestError(f"--mode policy: these configs do not compile (use --mode hybrid, "
                                          f"or drop them):\n{lines}")
        return mode, compiled.objects(), config_files
    plan = policy.delivery_plan(configs)
    for d in plan.deliveries:
        if d.hybrid == "webhook":
            print(f"sidecar-injector: hybrid: {d.config} by the webhook: {d.hybrid_reason}", file=sys.stderr)
    if not plan.webhook:
        print("sidecar-injector: hybrid: every config compiles: the policy install (no webhook)", file=sys.stderr)
        return _delivery(argparse.Namespace(**{**vars(args), "mode": "policy"}), config_files)
    if not plan.policy:
        return "webhook", [], config_files
    compiled = policy.compile_set(configs, name=args.name, failure_policy=fp, only=set(plan.policy),
                                  selector=policy.namespace_selector(configs.prefix, args.namespace))
    return mode, compiled.objects(), webhook_files(config_files, set(plan.webhook))


def webhook_files(config_files: dict[str, str], keep: set[str]) -> dict[str, str]:
    """The ConfigMap's files holding only the SidecarConfigs named in ``keep``: a file whose
    documents are all kept stays byte for byte, one with none is left out, a mixed one is
    rewritten with the kept documents only (its comments are lost)."""
    out: dict[str, str] = {}
    for key, text in config_files.items():
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        kept = [d for d in docs if isinstance(d, dict) and (d.get("metadata") or {}).get("name") in keep]
        if len(kept) == len(docs):
            out[key] = text
        elif kept:
            out[key] = "# The configs of this file the webhook delivers (manifests --mode hybrid)\n" + dump_all(kept)
    return out


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
