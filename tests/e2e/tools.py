"""Find or build the test-only Go tools: ``helm`` (the chart tests) and ``promtool`` (the alert tests).

Built like the Kubernetes binaries (``tests/e2e/binaries.py``): ``go install`` of the pinned
upstream module through the Go module proxy, once, into
``~/.cache/sidecar-injector/tools/<tool>-<version>/``. ``HELM`` / ``PROMTOOL`` name a binary
of your own instead. Neither tool is part of the product or its image.

Run ``python tests/e2e/tools.py`` to build both (a cold build takes minutes on two cores) and
print their paths; ``python tests/e2e/tools.py helm`` builds one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Pinned here and nowhere else. Helm 3.22 (the chart documents Helm >= 3.17 for
# --take-ownership); Prometheus 3.16 (module versions v0.3XY.Z are Prometheus 3.XY.Z).
TOOLS = {
    "helm": ("helm.sh/helm/v3/cmd/helm", "v3.22.0", "HELM"),
    "promtool": ("github.com/prometheus/prometheus/cmd/promtool", "v0.316.0", "PROMTOOL"),
}


class ToolUnavailable(RuntimeError):
    """Neither given, cached nor buildable here; the message says why."""


def _log(msg: str) -> None:
    print(f"[tools {time.strftime('%H:%M:%S', time.gmtime())}Z] {msg}", file=sys.stderr, flush=True)


def cache_path(name: str) -> Path:
    _, version, _ = TOOLS[name]
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sidecar-injector" / "tools" / f"{name}-{version}" / name


def find(name: str) -> Path | None:
    override = os.environ.get(TOOLS[name][2])
    for candidate in ([Path(override)] if override else []) + [cache_path(name)]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def build(name: str) -> Path:
    pkg, version, _ = TOOLS[name]
    if shutil.which("go") is None:
        raise ToolUnavailable(f"Go is not installed: {name} is built with Go (or set {TOOLS[name][2]})")
    out = cache_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / "lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"another build of {name} is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        gobin = out.parent / "bin.partial"
        env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOBIN=str(gobin), GOFLAGS="-buildvcs=false")
        cmd = ["go", "install", "-trimpath", "-ldflags", "-s -w", f"{pkg}@{version}"]
        _log(f"building {name} {version}: $ {' '.join(cmd)}")
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, cwd=out.parent)
        if proc.returncode != 0 or not (gobin / name).is_file():
            raise ToolUnavailable(f"building {name} failed ({proc.returncode}): {' '.join(cmd)}")
        os.replace(gobin / name, out)
        shutil.rmtree(gobin, ignore_errors=True)
        _log(f"built {out} in {time.monotonic() - started:.0f}s")
    return out


def ensure(name: str) -> Path:
    return find(name) or build(name)


def for_tests(name: str) -> Path:
    """The tool for a test: found, or built when ``CI=true`` (a skip there would hide the test);
    elsewhere the test is skipped with the reason (``scripts/test`` builds both first)."""
    import pytest

    found = find(name)
    if found is not None:
        return found
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        try:
            return build(name)
        except ToolUnavailable as e:
            pytest.fail(f"{name} is required in CI: {e}", pytrace=False)
    pytest.skip(f"{name} not built: run `python tests/e2e/tools.py {name}` (needs Go), or set {TOOLS[name][2]}")


if __name__ == "__main__":
    names = sys.argv[1:] or list(TOOLS)
    for n in names:
        try:
            print(f"{n}={ensure(n)}")
        except ToolUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
