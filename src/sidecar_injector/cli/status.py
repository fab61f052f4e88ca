"""``sidecar-injector status``: which running pods carry stale, missing or unexpected sidecars.

Read-only: lists pods, their owners (ReplicaSets, Jobs), namespaces, the injection webhook's
configuration and (without ``-c``) the SidecarConfig objects; writes nothing. Exit status 1
when any pod is stale or missing (or the current configs fail for it): a CI or cron gate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core import fleet as core_fleet
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet

DEFAULT_WEBHOOK_CONFIG = "sidecar-injector"  # the name `manifests` gives it (ManifestOptions.name)
DEFAULT_CONFIG_MAP = "sidecar-injector/sidecar-injector-config"  # `manifests`' default namespace and name


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    """The options ``status`` and ``rollout`` share."""
    p.add_argument("--config", "-c", default=None,
                   help="SidecarConfig file or directory (default: what the installed server has: its ConfigMap "
                        "(--config-map) and the cluster's ClusterSidecarConfig/SidecarConfig objects)")
    p.add_argument("--config-map", metavar="NS/NAME", default=DEFAULT_CONFIG_MAP,
                   help="the install's ConfigMap of config files, read without -c (default: %(default)s)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="annotation prefix (default: %(default)s)")
    p.add_argument("--kube-version", default=DEFAULT_KUBE_VERSION,
                   help="Kubernetes version whose schemas configs are validated against (default: %(default)s)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", default=None, help="namespace (default: the kubeconfig context's)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    p.add_argument("--selector", "-l", default=None, help="pod label selector (kubectl syntax)")
    p.add_argument("--kubeconfig", metavar="PATH", default=None,
                   help="kubeconfig file (default: $KUBECONFIG, then in-cluster credentials, then ~/.kube/config)")
    p.add_argument("--webhook-config", metavar="NAME", default=DEFAULT_WEBHOOK_CONFIG,
                   help="the MutatingWebhookConfiguration whose namespaceSelector decides which namespaces "
                        "are injected (default: %(default)s)")


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="which running pods have stale, missing or unexpected sidecars (read-only)")
    add_cluster_args(p)
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=run_status)


def scope_namespace(args: argparse.Namespace, config: Any) -> str | None:
    if args.all_namespaces:
        return None
    if args.namespace:
        return str(args.namespace)
    ctx = getattr(config, "context", None)
    return str(ctx.namespace) if ctx is not None and ctx.namespace else "default"


async def _configs(args: argparse.Namespace, api: Any) -> tuple[ConfigSet, list[str]]:
    if args.config:
        from sidecar_injector.config.configload import load_configs

        return load_configs(args.config, prefix=args.prefix, kube_version=args.kube_version), []
    from sidecar_injector.kube.fleet import cluster_configs

    ns, _, name = str(args.config_map).partition("/")
    if not ns or not name:
        from sidecar_injector.core.errors import InputError

        raise InputError(f"--config-map: expected NAMESPACE/NAME, got {args.config_map!r}")
    return await cluster_configs(api, args.prefix, args.kube_version, config_map=(ns, name))


async def gather(args: argparse.Namespace) -> tuple[Any, ConfigSet]:
    """Scan the cluster as ``args`` say: (Scan, configs)."""
    from sidecar_injector.kube.client import Api, load_config
    from sidecar_injector.kube.fleet import scan

    config = load_config(args.kubeconfig)
    api = Api(config, timeout=30.0)
    try:
        configs, notes = await _configs(args, api)
        result = await scan(api, configs, namespace=scope_namespace(args, config), selector=args.selector,
                            webhook_config=args.webhook_config)
        result.notes[:0] = notes
        return result, configs
    finally:
        await api.aclose()


def report_json(result: Any) -> dict[str, Any]:
    return {"pods": [p.as_json() for p in result.pods], "summary": result.summary}


def _table(result: Any) -> str:
    lines: list[str] = []
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for p in result.pods:
        groups.setdefault((p.namespace, p.owner.kind, p.owner.name), []).append(p)
    for (ns, kind, name), pods in groups.items():
        counts = core_fleet.summary(p.state.state for p in pods)
        text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines.append(f"{ns}  {kind}/{name}  ({len(pods)} pod{'s' if len(pods) != 1 else ''}: {text})")
        width = max(len(p.name) for p in pods)
        for p in pods:
            configs = ",".join(f"{c}={s}" for c, s in p.state.by_config.items()) or "-"
            lines.append(f"  {p.name:<{width}}  {p.state.state:<12}  {configs}  {p.state.detail}")
    if not result.pods:
        lines.append("no pods in scope")
    lines.append("")
    lines.append("summary: " + ", ".join(f"{s} {n}" for s, n in result.summary.items()))
    return "\n".join(lines) + "\n"


def run_status(args: argparse.Namespace) -> int:
    result, _ = asyncio.run(gather(args))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output == "json":
        sys.stdout.write(orjson.dumps(report_json(result), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.output == "yaml":
        from sidecar_injector.yamlio import emit

        sys.stdout.write(emit.document(report_json(result)))
    else:
        sys.stdout.write(_table(result))
    failing = sum(n for s, n in result.summary.items() if s in core_fleet.FAILING)
    if failing:
        print(f"sidecar-injector: {failing} pod(s) stale or missing their sidecars "
              "(`sidecar-injector rollout --stale|--missing` restarts their workloads)", file=sys.stderr)
        return 1
    return 0
