"""The offline commands: ``inject``, ``uninject``, ``review`` and ``explain``. No cluster needed.

- ``inject`` is ``istioctl kube-inject`` for any sidecar: YAML streams in, the same documents
  out with every pod and pod template injected, for GitOps pipelines and CI. Documents it does
  not change come out byte for byte; the ones it changes keep their comments and layout
  (:mod:`sidecar_injector.yamlio`). ``-o json`` and ``-o patch`` (kustomize) besides YAML.
- ``uninject`` removes exactly what injection added, from the status annotation alone;
  ``inject --reinject`` upgrades committed output to the current configs in one step.
- ``review`` answers an AdmissionReview exactly as the webhook does (same code path).
- ``explain`` answers "why wasn't my pod injected?": every config, its decision and reason,
  the resulting diff, and whether an injected pod is stale (``--fail-on-stale`` for CI).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import orjson

from sidecar_injector.cli.pipeline import (
    Run,
    inject_sources,
    kustomize_patches,
    patches_yaml,
    staleness,
    uninject_sources,
)
from sidecar_injector.config.configload import BUILTIN_EXAMPLE, load_configs
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core.admission import review
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import InputError, InvalidReview
from sidecar_injector.core.workloads import PodInjection
from sidecar_injector.policy import policy_declines
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.stream import Source, join, read_sources


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", "-c", default=None,
        help="SidecarConfig file or directory (default: the built-in example)",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="annotation prefix (default: %(default)s)")
    p.add_argument(
        "--kube-version", default=DEFAULT_KUBE_VERSION,
        help="Kubernetes version whose schemas configs are validated against (default: %(default)s)",
    )


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-f", "--filename", action="append", required=True,
                   help="YAML or JSON file, directory (*.yaml, *.yml, *.json) or - for stdin; repeatable")
    p.add_argument("-R", "--recursive", action="store_true", help="read directories given with -f recursively")


def register(sub: Any) -> None:
    p = sub.add_parser("inject", help="inject sidecars into pods and workloads in YAML files (offline)")
    _add_input_args(p)
    _add_config_args(p)
    p.add_argument("--namespace", "-n", default=None, help="namespace for objects that name none (default: default)")
    p.add_argument("-o", "--output", choices=("yaml", "json", "patch"), default="yaml",
                   help="yaml: the stream, edited in place (default); json: one object or a List; "
                        "patch: kustomize patches, one per injected object")
    p.add_argument("--reinject", action="store_true",
                   help="remove what an earlier injection added first, then inject with the current configs")
    p.set_defaults(func=run_inject)

    p = sub.add_parser("uninject", help="remove exactly what inject added (offline)")
    _add_input_args(p)
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="annotation prefix (default: %(default)s)")
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.set_defaults(func=run_uninject)

    p = sub.add_parser("review", help="answer an AdmissionReview exactly as the webhook would (offline)")
    p.add_argument("-f", "--filename", default="-", help="AdmissionReview JSON file, or - for stdin (default)")
    _add_config_args(p)
    p.add_argument("--on-error", choices=("fail", "allow", "deny"), default="fail")
    p.add_argument("--decode", action="store_true", help="also print the decoded JSON Patch")
    p.set_defaults(func=run_review)

    p = sub.add_parser("explain", help="say which configs a pod gets and why, with the diff (offline)")
    _add_input_args(p)
    _add_config_args(p)
    p.add_argument("--namespace", "-n", default=None, help="namespace for objects that name none (default: default)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--fail-on-stale", action="store_true",
                   help="exit 1 when an injected object is not what the current configs inject (CI gate)")
    p.add_argument("--fail-on-warning", action="store_true", help="exit 1 when there is any warning (CI gate)")
    p.set_defaults(func=run_explain)


def _configs(args: argparse.Namespace) -> ConfigSet:
    return load_configs(args.config or BUILTIN_EXAMPLE, prefix=args.prefix, kube_version=args.kube_version)


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{name}: cannot read: {e}") from None


def _report_failures(failures: list[str], verb: str = "injected") -> int:
    for f in failures:
        print(f"sidecar-injector: error: {f}", file=sys.stderr)
    if failures:
        print(f"sidecar-injector: {len(failures)} document(s) could not be {verb} (passed through unchanged)",
              file=sys.stderr)
    return 1 if failures else 0


def _dump(doc: Any) -> str:
    return emit.document(doc)


def _write(text: str) -> None:
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.buffer.flush()


def _json_out(run: Run) -> str:
    values = [r.value for r in run.docs]
    body: Any = values[0] if len(values) == 1 else {"apiVersion": "v1", "kind": "List", "items": values}
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n"


def _warn_pods(pods: list[PodInjection]) -> int:
    n = 0
    for p in pods:
        for note in p.notes:
            print(f"warning: {note}", file=sys.stderr)
            n += 1
        for w in p.result.warnings:
            print(f"warning: {p.kind} {p.name}: {w}", file=sys.stderr)
            n += 1
    return n


def run_inject(args: argparse.Namespace) -> int:
    configs = _configs(args)
    sources = read_sources(args.filename, args.recursive)
    failures: list[str] = []
    if args.reinject:
        undone = uninject_sources(sources, configs.status_key, convert_all=False)
        failures.extend(undone.failures)
        for n in undone.notes:
            print(f"note: {n}", file=sys.stderr)
        sources = [Source(s.label, t) for s, t in zip(sources, undone.texts, strict=True)]
    run = inject_sources(sources, configs, args.namespace, convert_all=args.output == "json")
    failures.extend(run.failures)
    if args.output == "json":
        _write(_json_out(run))
    elif args.output == "patch":
        _write(patches_yaml(kustomize_patches(run)))
    else:
        _write(join(run.texts))
    for n in run.notes:
        print(f"note: {n}", file=sys.stderr)
    for r in run.docs:
        _warn_pods(r.pods)
    return _report_failures(failures)


def run_uninject(args: argparse.Namespace) -> int:
    sources = read_sources(args.filename, args.recursive)
    run = uninject_sources(sources, f"{args.prefix}/status", convert_all=args.output == "json")
    _write(_json_out(run) if args.output == "json" else join(run.texts))
    for n in run.notes:
        print(f"note: {n}", file=sys.stderr)
    return _report_failures(run.failures, "uninjected")


def run_review(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read() if args.filename == "-" else _read_bytes(args.filename)
    try:
        result = review(raw, _configs(args), on_error=args.on_error)
    except InvalidReview as e:
        raise InvalidReview(f"invalid AdmissionReview (the webhook answers HTTP 400): {e}") from None
    sys.stdout.write(result.body.decode() + "\n")
    if args.decode and result.patch:
        sys.stdout.write(orjson.dumps(orjson.loads(result.patch), option=orjson.OPT_INDENT_2).decode() + "\n")
    if result.status != 200:
        print(f"sidecar-injector: the webhook answers HTTP {result.status}: {result.reason}", file=sys.stderr)
        return 1
    return 0


def _read_bytes(name: str) -> bytes:
    try:
        return Path(name).read_bytes()
    except OSError as e:
        raise InputError(f"{name}: cannot read: {e}") from None


def _delivery(configs: ConfigSet) -> tuple[Any, tuple[str, ...]]:
    """Each config's delivery per install mode (manifests --mode), and the compiled sidecars."""
    from sidecar_injector.policy import compile_set, delivery_plan

    return delivery_plan(configs), compile_set(configs).sidecar_names


def _shadowed(configs: ConfigSet, namespace: str) -> dict[str, str]:
    """Config name -> the cluster config that the namespace's config of that name shadows
    for pods in ``namespace`` (core.tenancy): "why does my pod get this envoy, not that one?"."""
    scoped = configs.for_namespace(namespace)
    if scoped is configs:
        return {}
    return {name: cluster.source for name, cluster in configs.by_name.items()
            if scoped.by_name.get(name) not in (None, cluster)}


def _explain_record(p: PodInjection, configs: ConfigSet, delivery: Any = None) -> dict[str, Any]:
    r = p.result
    stale = staleness(p.before, p.namespace, configs)
    plan, sidecars = delivery or _delivery(configs)
    shadows = _shadowed(configs, p.namespace)
    return {
        "kind": p.kind,
        "name": p.name,
        "namespace": p.namespace,
        "path": p.where,
        "injected": list(r.injected),
        "skipReason": r.skip_reason or None,
        "decisions": [
            {"config": d.config, "decision": "injected" if d.injected else "skipped", "reason": d.reason,
             "message": d.message, "requested": d.requested, "conflicts": list(d.conflicts),
             "delivery": (lambda dv: dv.modes() if dv else None)(plan.of(d.config)),
             "shadows": shadows.get(d.config)}
            for d in r.decisions
        ],
        "policyDeclines": policy_declines(p.before, configs, sidecars) or None,
        "warnings": [*p.notes, *r.warnings],
        "status": None if stale is None else {
            "state": stale.state, "injectedHash": stale.injected_hash or None,
            "currentHash": stale.current_hash or None, "differences": list(stale.differences),
            "message": stale.message or None,
        },
        "patch": r.patch,
        "diff": _diff(p),
    }


def _diff(p: PodInjection) -> str:
    if not p.result.patch:
        return ""
    before = _dump(p.before).splitlines(keepends=True)
    after = _dump(p.result.pod).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, "before", "after", n=2))


def _status_line(st: dict[str, Any]) -> str:
    if st["state"] == "up to date":
        return "up to date"
    if st["state"] == "stale":
        return (f"stale: injected {st['injectedHash']}, the current configs give {st['currentHash']} "
                f"({'; '.join(st['differences'])})")
    return f"unknown: {st['message']}"


def run_explain(args: argparse.Namespace) -> int:
    configs = _configs(args)
    run = inject_sources(read_sources(args.filename, args.recursive), configs, args.namespace, convert_all=False)
    delivery = _delivery(configs)
    records = [_explain_record(p, configs, delivery) for r in run.docs for p in r.pods]
    failures = run.failures
    stale = sum(1 for rec in records if rec["status"] and rec["status"]["state"] != "up to date")
    warnings = sum(len(rec["warnings"]) for rec in records)
    if args.output == "json":
        sys.stdout.write(orjson.dumps(records, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        if not records:
            print("no pods or pod templates found")
        for rec in records:
            head = f"{rec['kind']} {rec['name'] or '(no name)'} in namespace {rec['namespace']}"
            if rec["path"] != "(the pod itself)":
                head += f", pod template {rec['path']}"
            print(head)
            if rec["status"]:
                print(f"  status: {_status_line(rec['status'])}")
            if rec["injected"]:
                print(f"  injected: {', '.join(rec['injected'])}")
            else:
                print(f"  nothing injected ({rec['skipReason']})")
            for d in rec["decisions"]:
                mark = "+" if d["decision"] == "injected" else "-"
                how = " (requested)" if d["requested"] else ""
                if d["shadows"]:
                    how += f" (this namespace's own, in place of {d['shadows']})"
                print(f"  {mark} {d['config']}{how}: {d['reason']}: {d['message']}")
            if rec["policyDeclines"]:
                print(f"  policy (--mode policy/hybrid) leaves this pod alone: {rec['policyDeclines']}")
            for w in rec["warnings"]:
                print(f"  warning: {w}")
            if rec["diff"]:
                print("  diff:")
                for line in rec["diff"].splitlines():
                    print(f"    {line}")
            print()
    if args.output != "json" and records:
        print("delivery by install mode (manifests --mode webhook | policy | hybrid):")
        for dv in delivery[0].deliveries:
            modes = dv.modes()
            print(f"  {dv.config}: webhook: webhook; policy: {modes['policy']['delivery']}; "
                  f"hybrid: {modes['hybrid']['delivery']}")
            for mode in ("policy", "hybrid"):
                if modes[mode]["delivery"] != "policy":
                    print(f"    {mode}: {modes[mode]['reason']}")
    code = _report_failures(failures)
    if args.fail_on_stale and stale:
        print(f"sidecar-injector: {stale} injected object(s) not up to date with the current configs "
              "(inject --reinject upgrades them)", file=sys.stderr)
        code = 1
    if args.fail_on_warning and warnings:
        print(f"sidecar-injector: {warnings} warning(s)", file=sys.stderr)
        code = 1
    return code
