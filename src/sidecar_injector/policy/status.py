"""The status annotation's constant part, computed at compile time for every ordered selection.

The webhook's status annotation holds the injected names, a hash chained over them and their
digests: CEL has no sha256, so the compiler calls the core's own ``status_annotation`` for every
ordered set of configs one pod may get (a subset of the defaults in load order, then requested
ones in any order) and the policy looks the head up in a CEL map by the injected names; only
the pod-dependent ``added`` record is built in CEL (:mod:`sidecar_injector.policy.generate`).
Separate because this is the one place the compiler depends on the core's status format, and
because the number of such sets (:data:`MAX_SELECTIONS`) bounds which config sets compile at all.
"""

from __future__ import annotations

import itertools

from sidecar_injector.core.config import SidecarConfig, content_digest
from sidecar_injector.core.record import Record, status_annotation
from sidecar_injector.policy.refusals import static_parts

#: Most ordered selections the status table may hold (defaults subsets x requested permutations).
MAX_SELECTIONS = 2048


def digest(c: SidecarConfig) -> str:
    """The config's digest in the status annotation."""
    # Templated configs: the webhook hashes the values rendered for the pod, which CEL cannot;
    # the digest of the unrendered config stands in (documented; `injected` stays exact).
    return c.static_digest or content_digest(static_parts(c))


def selections(cfgs: list[SidecarConfig]) -> list[tuple[str, ...]]:
    """Every ordered list of names one pod may get: a subset of the defaults in load order,
    then requested ones in any order. Raises :class:`OverflowError` past :data:`MAX_SELECTIONS`."""
    defaults = [c.name for c in cfgs if c.inject_by_default]
    optional = [c.name for c in cfgs if not c.inject_by_default]
    out: list[tuple[str, ...]] = []
    for k in range(len(defaults) + 1):
        for d in itertools.combinations(defaults, k):
            for m in range(len(optional) + 1):
                for o in itertools.permutations(optional, m):
                    if d or o:
                        out.append(d + o)
                        if len(out) > MAX_SELECTIONS:
                            raise OverflowError
    return out


def status_heads(cfgs: list[SidecarConfig]) -> dict[str, str]:
    """Comma-joined injected names -> the core's status annotation for them up to its ``added``
    record (which ends with ``"added":``), for every selection of ``cfgs``."""
    table: dict[str, str] = {}
    for names_t in selections(cfgs):
        digests = [(n, digest(next(c for c in cfgs if c.name == n))) for n in names_t]
        value = status_annotation(list(names_t), digests, None, Record(), None)
        tail = '"added":{}}'
        if not value.endswith(tail):
            raise AssertionError(f"the core's status annotation format changed: {value!r}")
        table[",".join(names_t)] = value[: -len(tail)] + '"added":'
    return table
