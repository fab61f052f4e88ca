"""``sidecar-injector policy``: the SidecarConfigs as a MutatingAdmissionPolicy and its binding.

Prints the policy for the configs that compile (one policy for their ordered group: the
apiserver runs policies in no fixed order) and exits 1 naming each config that does not
compile and why, one line each (``--allow-partial``: exit 0 with the rest).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson
import yaml

from sidecar_injector.config.configload import load_configs
from sidecar_injector.core.config import DEFAULT_PREFIX
from sidecar_injector.policy import compile_set


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="compile SidecarConfigs to a MutatingAdmissionPolicy (no webhook)")
    p.add_argument("-c", "--config", required=True, help="SidecarConfig file or directory")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="annotation prefix (default %(default)s)")
    p.add_argument("--name", default="sidecar-injector", help="name of the policy and binding")
    p.add_argument("--namespace-selector", help="the binding's namespaceSelector (YAML or JSON); default: "
                   "namespaces labelled <prefix>/injection=enabled, never the system ones")
    p.add_argument("--failure-policy", choices=("Fail", "Ignore"), default="Fail")
    p.add_argument("--allow-partial", action="store_true", help="print the configs that compile and exit 0")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    configs = load_configs(args.config, prefix=args.prefix)
    selector = yaml.safe_load(args.namespace_selector) if args.namespace_selector else None
    compiled = compile_set(configs, name=args.name, selector=selector, failure_policy=args.failure_policy)
    for u in compiled.unsupported:
        print(f"sidecar-injector: webhook-only: {u}", file=sys.stderr)
    objects = compiled.objects()
    if objects:
        if args.output == "json":
            items = {"apiVersion": "v1", "kind": "List", "items": objects}
            sys.stdout.write(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False, width=1 << 20))
    return 0 if args.allow_partial or not compiled.unsupported else 1
