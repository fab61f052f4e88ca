"""Find or build the real control-plane binaries the end-to-end tests run.

Order of preference, as envtest users expect:
1. ``TEST_ASSET_KUBE_APISERVER`` / ``TEST_ASSET_ETCD`` / ``TEST_ASSET_KUBE_CONTROLLER_MANAGER``;
2. ``KUBEBUILDER_ASSETS`` (a folder holding ``kube-apiserver``, ``etcd``, ``kube-controller-manager``);
3. a cache under ``~/.cache/sidecar-injector/k8s-bin/<versions>/``, filled by building the
   official sources through the Go module proxy.

``go install`` of ``k8s.io/kubernetes/cmd/...`` fails on the module's replace directives
(every staging module is required at v0.0.0 and replaced by a local path), so each binary
gets a tiny wrapper module of its own: a ``main.go`` calling the command's ``app`` package,
and a ``go.mod`` with one ``replace`` per staging module at the matching ``v0.X.Y``.

Run ``python tests/e2e/binaries.py`` to build (a cold build takes many minutes on two
cores) and print the folder. The versions are pinned here and nowhere else.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# The pinned versions: the newest Kubernetes whose `go` directive the machine's Go
# (1.26) satisfies, and an etcd 3.6 release (Debian's 3.4.23 is below what current
# Kubernetes supports).
KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.6.16"

BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
ENV_OVERRIDES = {
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "etcd": "TEST_ASSET_ETCD",
    "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
}

_MAINS = {
    "kube-apiserver": (
        "k8s.io/kubernetes/cmd/kube-apiserver/app",
        "app.NewAPIServerCommand()",
    ),
    "kube-controller-manager": (
        "k8s.io/kubernetes/cmd/kube-controller-manager/app",
        "app.NewControllerManagerCommand()",
    ),
}


class BinariesUnavailable(RuntimeError):
    """The binaries are neither given nor buildable here; the message says why."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sidecar-injector" / "k8s-bin" / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"


def _log(msg: str) -> None:
    # Timestamped, so the log of a cold build shows how long each step took.
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    print(f"[k8s-binaries {stamp}Z] {msg}", file=sys.stderr, flush=True)


def find() -> dict[str, Path] | None:
    """Return the binaries if they are given or cached, without building."""
    found: dict[str, Path] = {}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for name in BINARIES:
        override = os.environ.get(ENV_OVERRIDES[name])
        candidates = [Path(override)] if override else []
        if assets:
            candidates.append(Path(assets) / name)
        candidates.append(cache_dir() / name)
        for c in candidates:
            if c.is_file() and os.access(c, os.X_OK):
                found[name] = c
                break
    return found if len(found) == len(BINARIES) else None


def _staging_modules() -> list[str]:
    """The staging modules k8s.io/kubernetes replaces locally, read from its go.mod."""
    proxy = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0]
    if proxy in ("off", "direct"):
        proxy = "https://proxy.golang.org"
    url = f"{proxy.rstrip('/')}/k8s.io/kubernetes/@v/{KUBERNETES_VERSION}.mod"
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            text = r.read().decode()
    except OSError as e:
        raise BinariesUnavailable(f"cannot read k8s.io/kubernetes go.mod from the Go module proxy: {e}") from e
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+) => \./staging/", text, re.M)))


def _staging_version() -> str:
    major, minor, patch = KUBERNETES_VERSION.lstrip("v").split(".")
    assert major == "1"
    return f"v0.{minor}.{patch}"


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    _log(f"$ {' '.join(cmd)}  (in {cwd})")
    proc = subprocess.run(cmd, cwd=cwd, env=env)
    if proc.returncode != 0:
        raise BinariesUnavailable(f"command failed ({proc.returncode}): {' '.join(cmd)}")


def _build_k8s(name: str, work: Path, out: Path, env: dict[str, str]) -> None:
    pkg, ctor = _MAINS[name]
    mod = work / name
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n'
        '\t"k8s.io/component-base/cli"\n'
        f'\t"{pkg}"\n)\n\n'
        f"func main() {{\n\tos.Exit(cli.Run({ctor}))\n}}\n"
    )
    sv = _staging_version()
    replaces = "\n".join(f"\t{m} => {m} {sv}" for m in _staging_modules())
    (mod / "go.mod").write_text(
        f"module local/{name}\n\ngo 1.26\n\n"
        f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\n"
        f"replace (\n{replaces}\n)\n"
    )
    _run(["go", "mod", "tidy"], mod, env)
    ver = KUBERNETES_VERSION
    ldflags = " ".join(
        f"-X {p}.gitVersion={ver} -X {p}.gitMajor=1 -X {p}.gitMinor={ver.split('.')[1]}"
        for p in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    )
    _run(["go", "build", "-trimpath", "-ldflags", f"-s -w {ldflags}", "-o", str(_partial(out, name)), "."], mod, env)


def _build_etcd(work: Path, out: Path, env: dict[str, str]) -> None:
    mod = work / "etcd"
    mod.mkdir(parents=True, exist_ok=True)
    (mod / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() {\n\tetcdmain.Main(os.Args)\n}\n"
    )
    (mod / "go.mod").write_text(f"module local/etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n")
    _run(["go", "mod", "tidy"], mod, env)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(_partial(out, "etcd")), "."], mod, env)


def _partial(out: Path, name: str) -> Path:
    """Where a binary is built before it is renamed into place: an interrupted build never
    leaves a file that :func:`find` would take for a finished one."""
    return out / f".{name}.partial"


def _check_version(path: Path, name: str) -> None:
    want = ETCD_VERSION.lstrip("v") if name == "etcd" else KUBERNETES_VERSION
    proc = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=60)
    if want not in proc.stdout + proc.stderr:
        raise BinariesUnavailable(
            f"{path} --version does not report {want}: {(proc.stdout + proc.stderr).strip()[:200]}"
        )


def build() -> dict[str, Path]:
    """Build whatever is missing into the cache and return all three paths."""
    if shutil.which("go") is None:
        raise BinariesUnavailable(
            "Go is not installed: install Go >= 1.26, or set KUBEBUILDER_ASSETS to a folder "
            "holding kube-apiserver, etcd and kube-controller-manager"
        )
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    work = out.parent / "build"
    # The wrapper modules are ours, so GOTOOLCHAIN=local: never download another Go.
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-mod=mod -buildvcs=false")
    # One build at a time per cache: a second caller (another test run, CI right after a
    # session) waits for the first instead of compiling the same thing on the same cores.
    with (out.parent / f"{out.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("another build of these binaries is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        for name in BINARIES:
            if (out / name).is_file():
                continue
            _log(f"building {name} (k8s {KUBERNETES_VERSION}, etcd {ETCD_VERSION}); a cold build takes minutes")
            if name == "etcd":
                _build_etcd(work, out, env)
            else:
                _build_k8s(name, work, out, env)
            _check_version(_partial(out, name), name)
            os.replace(_partial(out, name), out / name)
            _log(f"built {out / name} ({time.monotonic() - started:.0f}s so far)")
    found = find()
    assert found is not None
    return found


def ensure() -> dict[str, Path]:
    return find() or build()


if __name__ == "__main__":
    try:
        paths = ensure()
    except BinariesUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    for k, v in paths.items():
        print(f"{k}={v}")
