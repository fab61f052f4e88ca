"""The installed runtime's size, import time and cold start: what the image carries and costs.

Builds a fresh virtual environment, ``pip install`` of this checkout with no extras (from
``requirements.lock`` with ``--require-hashes`` when ``--lock`` is given, as the Dockerfile
does), optionally runs ``scripts/slim-runtime`` on it (``--slim``, as the Dockerfile does), and
reports:

- the apparent size of the venv's site-packages (sum of file sizes, pip and setuptools
  included), in MiB, and the ten largest distributions;
- the import time of the server (``import sidecar_injector.server.run``, fresh interpreter,
  median of 5);
- cold start to ready: ``sidecar-injector serve`` on the built-in example with a self-signed
  certificate, from the process start to ``/readyz`` answering 200 (median of 5).

    .venv/bin/python bench/runtime_size.py [--slim] [--lock] [--keep DIR] [--no-timing]
    .venv/bin/python bench/runtime_size.py --timing-only DIR     # time a kept venv again

A benchmark, not a test: ``tests/unit/test_runtime.py`` checks the budget on the same numbers.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024


def apparent_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def by_top_level(site: Path) -> list[tuple[int, str]]:
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        key = entry.name.split("-")[0] if entry.name.endswith((".dist-info", ".egg-info")) else entry.name
        key = key.removesuffix(".py").lower().replace("_", "-")
        size = apparent_size(entry) if entry.is_dir() else entry.lstat().st_size
        sizes[key] = sizes.get(key, 0) + size
    return sorted(((v, k) for k, v in sizes.items()), reverse=True)


def install(venv: Path, lock: bool, slim: bool) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check"]
    if lock:
        subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
        subprocess.run([*pip, "--no-deps", str(ROOT)], check=True)
    else:
        subprocess.run([*pip, str(ROOT)], check=True)
    [site] = (venv / "lib").glob("python3*/site-packages")
    if slim:
        subprocess.run(["sh", str(ROOT / "scripts" / "slim-runtime"), str(site)], check=True)
    return site


def import_time(venv: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import time; t = time.perf_counter(); import sidecar_injector.server.run; "
                              "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True,
                             cwd="/")
        times.append(float(out.stdout))
    return statistics.median(times)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cold_start(venv: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        port, metrics = _free_port(), _free_port()
        start = time.perf_counter()
        proc = subprocess.Popen([str(venv / "bin" / "sidecar-injector"), "serve", "--host", "127.0.0.1",
                                 "--port", str(port), "--metrics-port", str(metrics), "--log-level", "warning"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")
        try:
            while True:
                if time.perf_counter() - start > 60:
                    raise RuntimeError("the server was not ready within 60 s")
                try:
                    c = http.client.HTTPConnection("127.0.0.1", metrics, timeout=1)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.01)
            times.append(time.perf_counter() - start)
        finally:
            proc.terminate()
            proc.wait(30)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slim", action="store_true", help="run scripts/slim-runtime on the venv, as the Dockerfile does")
    ap.add_argument("--lock", action="store_true", help="install from requirements.lock with --require-hashes")
    ap.add_argument("--keep", type=Path, help="build the venv here and keep it")
    ap.add_argument("--no-timing", action="store_true", help="sizes only")
    ap.add_argument("--timing-only", type=Path, metavar="VENV", help="time an existing venv (made with --keep)")
    args = ap.parse_args()
    if args.timing_only:
        print(f"import sidecar_injector.server.run: {import_time(args.timing_only) * 1000:.0f} ms (median of 5)")
        print(f"cold start to ready (serve, self-signed): {cold_start(args.timing_only) * 1000:.0f} ms (median of 5)")
        return 0
    tmp = None
    if args.keep:
        venv = args.keep
        shutil.rmtree(venv, ignore_errors=True)
    else:
        tmp = tempfile.mkdtemp(prefix="si-runtime-")
        venv = Path(tmp) / "venv"
    try:
        site = install(venv, args.lock, args.slim)
        total = apparent_size(site)
        print(f"site-packages apparent size: {total / MIB:.1f} MiB ({total} bytes)"
              f"{' after scripts/slim-runtime' if args.slim else ''}")
        for size, name in by_top_level(site)[:12]:
            print(f"  {size / MIB:7.2f} MiB  {name}")
        if not args.no_timing:
            print(f"import sidecar_injector.server.run: {import_time(venv) * 1000:.0f} ms (median of 5)")
            print(f"cold start to ready (serve, self-signed): {cold_start(venv) * 1000:.0f} ms (median of 5)")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
