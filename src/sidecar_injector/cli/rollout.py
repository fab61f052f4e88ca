"""``sidecar-injector rollout --stale|--missing``: restart the workloads of stale or un-injected
pods the way ``kubectl rollout restart`` does, a bounded number at a time, each waited for until
ready (``kubectl rollout status``), stopping at the first that does not become ready.

Never touched: bare pods (listed, with the command that recreates one), Jobs and CronJobs
(listed: their next run gets the current sidecars), workloads whose own object carries
``inject: "false"``. ``--dry-run`` prints the plan and changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

from sidecar_injector.cli.status import add_cluster_args, gather
from sidecar_injector.core import fleet as core_fleet
from sidecar_injector.core.errors import InputError


def _duration(text: str) -> float:
    """``300``, ``90s``, ``5m``, ``1h30m`` -> seconds."""
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not text.strip() or m is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 300s, 5m, 1h)")
    h, mi, s = m.groups()
    return int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


def register(sub: Any) -> None:
    p = sub.add_parser("rollout", help="restart the workloads of stale or un-injected pods, safely")
    which = p.add_argument_group("which pods (at least one)")
    which.add_argument("--stale", action="store_true", help="pods whose sidecars are not the current version")
    which.add_argument("--missing", action="store_true", help="pods missing a sidecar they should carry")
    add_cluster_args(p)
    p.add_argument("--max-unavailable-workloads", type=int, default=1, metavar="N",
                   help="workloads restarted at the same time (default: %(default)s)")
    p.add_argument("--timeout", type=_duration, default=300.0, metavar="DURATION",
                   help="how long each workload may take to become ready (default: 5m)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.set_defaults(func=run_rollout)


def run_rollout(args: argparse.Namespace) -> int:
    if not (args.stale or args.missing):
        raise InputError("rollout: say which pods: --stale, --missing or both")
    if args.max_unavailable_workloads < 1:
        raise InputError("--max-unavailable-workloads must be at least 1")
    return asyncio.run(_run(args))


def _say(text: str) -> None:
    print(text, flush=True)


async def _run(args: argparse.Namespace) -> int:
    from sidecar_injector.kube.client import Api, load_config
    from sidecar_injector.kube.fleet import rollout, workload_opted_out

    result, configs = await gather(args)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    wanted = ({core_fleet.STALE} if args.stale else set()) | ({core_fleet.MISSING} if args.missing else set())
    pods = [p for p in result.pods if p.state.state in wanted]
    owners = sorted({p.owner for p in pods})
    api = Api(load_config(args.kubeconfig), timeout=30.0)
    try:
        declined = [o for o in owners if await workload_opted_out(api, o, configs.inject_key)]
        plan = core_fleet.plan_rollout(owners, declined)
        count = {o: sum(1 for p in pods if p.owner == o) for o in owners}
        label = " or ".join(sorted(wanted))
        _say(f"{len(pods)} {label} pod(s) in {len(owners)} workload(s); "
             f"{len(plan.restart)} to restart, {args.max_unavailable_workloads} at a time")
        for i, o in enumerate(plan.restart, 1):
            _say(f"  {i}. {o.namespace} {o.kind.lower()}/{o.name} ({count[o]} pod(s))")
        for o, why in plan.skipped:
            _say(f"  skipped: {o.namespace} {o.kind.lower()}/{o.name} ({count[o]} pod(s)): {why}")
        if args.dry_run:
            _say("dry run: nothing changed")
            return 0
        if not plan.restart:
            return 0
        done = await rollout(api, list(plan.restart), parallel=args.max_unavailable_workloads,
                             timeout=args.timeout, report=_say)
    finally:
        await api.aclose()
    if done.failed:
        for o, why in done.failed:
            print(f"sidecar-injector: error: rollout stopped: {o.kind.lower()}/{o.name} in {o.namespace} did not "
                  f"become ready: {why}", file=sys.stderr)
        if done.not_started:
            left = ", ".join(f"{o.namespace} {o.kind.lower()}/{o.name}" for o in done.not_started)
            print(f"sidecar-injector: not restarted: {left}", file=sys.stderr)
        return 1
    _say(f"{len(done.done)} workload(s) restarted and ready; run `sidecar-injector status` to check")
    return 0
