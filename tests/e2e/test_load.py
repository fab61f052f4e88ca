"""Test 7: 200 pods created concurrently through the apiserver. Every one is injected exactly
once and none is rejected. The latency the webhook adds per pod creation, compared with the same
run in a namespace the webhook does not match, is printed (a measurement, never an assertion:
timing depends on the machine).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from typing import Any

import pytest

from .webhooks import create_pod, is_injected, list_pods, pod

pytestmark = pytest.mark.e2e

PODS = 200
SEQUENTIAL = 100
ROUNDS = 2  # alternate baseline and webhook runs, so warm-up and drift hit both alike


def create_concurrently(client: Any, namespace: str, prefix: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Create PODS pods at once (one thread each, released together); per-request latencies."""
    barrier = threading.Barrier(PODS)
    latencies: list[float] = []
    errors: list[str] = []

    def one(i: int) -> None:
        body = pod(f"{prefix}-{i}")
        barrier.wait()
        t0 = time.perf_counter()
        try:
            create_pod(client, namespace, body, dry_run=dry_run)
        except Exception as e:  # every failure is the finding, whatever its type
            errors.append(f"{prefix}-{i}: {e}")
            return
        latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(PODS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.perf_counter() - t0, "latencies": latencies, "errors": errors}


def create_one_by_one(client: Any, namespaces: tuple[str, str], n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pod at a time, alternating between the two namespaces, so that both series see the
    same background load: the latency a single pod creation sees, without and with the webhook."""
    runs: tuple[dict[str, Any], dict[str, Any]] = (
        {"wall": 0.0, "latencies": [], "errors": []},
        {"wall": 0.0, "latencies": [], "errors": []},
    )
    for i in range(n):
        for ns, run in zip(namespaces, runs, strict=True):
            t = time.perf_counter()
            create_pod(client, ns, pod(f"seq-{i}"))
            elapsed = time.perf_counter() - t
            run["latencies"].append(elapsed)
            run["wall"] += elapsed
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    lat = sorted(x for r in runs for x in r["latencies"])
    return {
        "mean_ms": statistics.fmean(lat) * 1000,
        "p50_ms": lat[len(lat) // 2] * 1000,
        "p95_ms": lat[int(len(lat) * 0.95)] * 1000,
        "wall_s": statistics.fmean(r["wall"] for r in runs),
    }


def test_200_concurrent_pods_are_each_injected_once(
    injector: Any, register_webhook: Any, control_plane: Any, api: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = injector("article.yaml")
    hook = register_webhook(server, failure_policy="Fail")
    baseline_ns = hook.namespace("load-baseline", enabled=False)
    webhook_ns = hook.namespace("load-webhook")

    with control_plane.api_client(pool_size=PODS) as client:
        # Warm-up (dry runs store nothing): opens the client's connections to the apiserver and
        # the apiserver's to the webhook, so neither measured run pays for TLS handshakes alone.
        for ns in (baseline_ns, webhook_ns):
            assert create_concurrently(client, ns, "warm", dry_run=True)["errors"] == []
        baseline, webhook = [], []
        for r in range(ROUNDS):
            baseline.append(create_concurrently(client, baseline_ns, f"load{r}"))
            webhook.append(create_concurrently(client, webhook_ns, f"load{r}"))
        seq_base, seq_hooked = create_one_by_one(client, (baseline_ns, webhook_ns), SEQUENTIAL)

    assert [e for run in baseline + webhook for e in run["errors"]] == []
    stored = list_pods(api, webhook_ns)
    assert len(stored) == PODS * ROUNDS + SEQUENTIAL
    for p in stored:
        sidecars = [c for c in p["spec"]["containers"] if c["name"] == "hello-sidecar"]
        assert is_injected(p) and len(sidecars) == 1, p["metadata"]["name"]
        assert [v["name"] for v in p["spec"]["volumes"]].count("hello-shared") == 1
    assert not any(is_injected(p) for p in list_pods(api, baseline_ns))

    base, hooked = summary(baseline), summary(webhook)
    seq_b, seq_h = summary([seq_base]), summary([seq_hooked])
    server_ms = [
        r["duration_ms"]
        for r in server.admissions()
        if r["namespace"] == webhook_ns and not r["pod"].startswith("warm-")
    ]
    report = {
        "pods_per_run": PODS,
        "runs": ROUNDS,
        "without_webhook": base,
        "with_webhook": hooked,
        "sequential_without_webhook": seq_b,
        "sequential_with_webhook": seq_h,
        "added_ms_per_pod_sequential_mean": seq_h["mean_ms"] - seq_b["mean_ms"],
        "added_ms_per_pod_sequential_p50": seq_h["p50_ms"] - seq_b["p50_ms"],
        "added_mean_ms_per_pod": hooked["mean_ms"] - base["mean_ms"],
        "added_p50_ms_per_pod": hooked["p50_ms"] - base["p50_ms"],
        "added_wall_ms_per_pod": (hooked["wall_s"] - base["wall_s"]) * 1000 / PODS,
        "webhook_calls_per_pod": len(server_ms) / (PODS * ROUNDS + SEQUENTIAL),
        "webhook_server_mean_ms": statistics.fmean(server_ms) if server_ms else None,
    }
    with capsys.disabled():
        print(f"\n[e2e load] one pod at a time, {SEQUENTIAL} pods per namespace, alternating")
        print(f"[e2e load]   without webhook: {fmt(seq_b)}")
        print(f"[e2e load]   with webhook:    {fmt(seq_h)}")
        print(
            f"[e2e load]   added per pod: mean {report['added_ms_per_pod_sequential_mean']:+.2f} ms, "
            f"p50 {report['added_ms_per_pod_sequential_p50']:+.2f} ms"
        )
        print(f"[e2e load] {PODS} concurrent pod creations x {ROUNDS} runs")
        print(f"[e2e load]   without webhook: {fmt(base)}")
        print(f"[e2e load]   with webhook:    {fmt(hooked)}")
        print(
            f"[e2e load]   added per pod: mean latency {report['added_mean_ms_per_pod']:+.1f} ms, "
            f"p50 {report['added_p50_ms_per_pod']:+.1f} ms, wall time/pod {report['added_wall_ms_per_pod']:+.2f} ms"
        )
        print(
            f"[e2e load] webhook calls per pod {report['webhook_calls_per_pod']:.2f} "
            f"(the ServiceAccount plugin re-runs after our patch, so ours is reinvoked), "
            f"server-side time per call {report['webhook_server_mean_ms']:.2f} ms"
        )
        print("[e2e load] json " + json.dumps(report))


def fmt(s: dict[str, float]) -> str:
    return f"mean {s['mean_ms']:.1f} ms, p50 {s['p50_ms']:.1f} ms, p95 {s['p95_ms']:.1f} ms, wall {s['wall_s']:.2f} s"
