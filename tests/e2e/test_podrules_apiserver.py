"""core.podrules against the judge: every pod of the shared case table (tests/unit/test_podrules.py)
is created with server-side dry run in the real kube-apiserver, and ``check_pod`` must find no
problem exactly when the apiserver accepts the pod. Where a case says "refused", the apiserver's
own reason is checked to name the same part of the pod, so a case is refused for the rule it is
about and not for an accident of its construction.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from sidecar_injector.core.podrules import check_pod, format_problem

from .controlplane import ControlPlane

try:  # the unit tests' table; tests/ is on sys.path for both directories (pytest rootdir import)
    from unit.test_podrules import CASES, Case, ctr, mkpod
except ImportError:  # pragma: no cover - run from another working directory
    import importlib.util
    import sys
    from pathlib import Path

    _spec = importlib.util.spec_from_file_location(
        "podrules_cases", Path(__file__).parents[1] / "unit" / "test_podrules.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["podrules_cases"] = _module
    _spec.loader.exec_module(_module)
    CASES, Case, ctr, mkpod = _module.CASES, _module.Case, _module.ctr, _module.mkpod

pytestmark = pytest.mark.e2e

NAMESPACE = "podrules"


@pytest.fixture(scope="module")
def core_api(control_plane: ControlPlane) -> Iterator[kubernetes.client.CoreV1Api]:
    control_plane.create_namespace(NAMESPACE)
    with control_plane.api_client() as client:
        yield kubernetes.client.CoreV1Api(client)


def apiserver_verdict(api: kubernetes.client.CoreV1Api, pod: dict[str, Any]) -> tuple[bool, str, list[str]]:
    """(accepted, message, the fields the apiserver blames) for a dry-run create of ``pod``.

    Sent as raw JSON, past the client's typed models (which, for one, refuse a quantity written
    as a JSON number, as a pod may have it)."""
    client = api.api_client
    method, url, headers, body, _ = client.param_serialize(
        method="POST",
        resource_path="/api/v1/namespaces/{namespace}/pods",
        path_params={"namespace": NAMESPACE},
        query_params=[("dryRun", "All")],
        header_params={"Content-Type": "application/json", "Accept": "application/json"},
        body=copy.deepcopy(pod),
        auth_settings=["BearerToken"],
    )
    response = client.call_api(method, url, header_params=headers, body=body)
    response.read()
    status, data = response.status, json.loads(response.data or b"{}")
    if 200 <= status < 300:
        return True, "", []
    if status not in (400, 422):
        raise AssertionError(f"unexpected answer {status}: {data}")
    causes = (data.get("details") or {}).get("causes") or []
    return False, data.get("message", ""), [c.get("field", "") for c in causes]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_check_pod_agrees_with_the_apiserver(core_api: kubernetes.client.CoreV1Api, case: Case) -> None:
    accepted, message, fields = apiserver_verdict(core_api, case.pod)
    problems = [format_problem(p) for p in check_pod(copy.deepcopy(case.pod))]
    assert accepted == (not problems), (
        f"{case.id}: apiserver {'accepted' if accepted else 'refused'} ({message!r}); check_pod found {problems}"
    )
    # The table's expectation is what the apiserver does (the table is also the unit tests').
    assert accepted == case.ok, f"{case.id}: the table says ok={case.ok}, the apiserver: {message!r}"
    if not accepted and case.where and fields:  # a 400 (the pod does not decode) names no field
        # The apiserver blames the part of the pod the case is about (its paths are less precise
        # than ours at times, e.g. metadata.labels for a label key, or a list without its index).
        stem = case.where.split("[")[0].split(".")[-1]
        assert stem in message, f"{case.id}: expected the apiserver to blame {case.where!r}: {message!r} {fields}"
    if not accepted:
        # Worded like the apiserver: one of our messages is, verbatim, one of its reasons (for an
        # "Invalid value", its detail at least: the apiserver renders some values as Go structs,
        # and a pod that does not decode gets the bare detail).
        ours = [m for _, m in check_pod(copy.deepcopy(case.pod))]
        assert any(_said(m, message) for m in ours), f"{case.id}: none of {ours} in {message!r}"


def _said(ours: str, theirs: str) -> bool:
    return ours in theirs or (ours.startswith("Invalid value: ") and ours.rsplit(": ", 1)[-1] in theirs)


def test_the_table_exercises_both_verdicts() -> None:
    assert sum(c.ok for c in CASES) >= 30
    assert sum(not c.ok for c in CASES) >= 60


# -- differential fuzzing of the string formats ------------------------------------------------


def _strings(alphabet: str, n: int, seed: int, max_len: int = 7) -> list[str]:
    rng = random.Random(seed)
    return sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len))) for _ in range(n)})


FUZZ = {
    # field -> (pod with the string in it, strings to try)
    "quantity": (
        lambda s: mkpod(ctr(resources={"requests": {"memory": s}})),
        _strings("0123456789.+-eEiKkMGTPmnu ", 150, 1),
    ),
    "label key": (lambda s: mkpod(labels={s: "v"}), [*_strings("aZ09-_./", 100, 2), ""]),
    "label value": (lambda s: mkpod(labels={"k": s}), _strings("aZ09-_./", 100, 3)),
    "annotation key": (lambda s: mkpod(annotations={s: "v"}), [*_strings("aZ09-_./", 100, 4), ""]),
    "container name": (lambda s: mkpod(ctr(s or "x")), _strings("az09-.A_", 100, 5)),
    "port name": (lambda s: mkpod(ctr(ports=[{"containerPort": 80, "name": s}])), _strings("az09-A", 100, 6)),
    "env name": (lambda s: mkpod(ctr(env=[{"name": s, "value": "x"}])), [*_strings("aZ0 =_.é\t-", 100, 7), ""]),
}


@pytest.mark.parametrize("field", sorted(FUZZ))
def test_string_formats_agree_with_the_apiserver(core_api: kubernetes.client.CoreV1Api, field: str) -> None:
    make, strings = FUZZ[field]
    disagreements, verdicts = [], set()
    for s in strings:
        pod = make(s)
        accepted, message, _ = apiserver_verdict(core_api, pod)
        verdicts.add(accepted)
        problems = check_pod(copy.deepcopy(pod))
        if accepted != (not problems):
            disagreements.append((s, accepted, message, [format_problem(p) for p in problems]))
    assert not disagreements, f"{field}: {len(disagreements)} of {len(strings)} disagree: {disagreements[:5]}"
    assert verdicts == {True, False}, f"{field}: the strings tried do not exercise both verdicts"
