"""The quickstart's demo: run `sidecar-injector serve` on the built-in example and talk to it
over HTTPS the way kube-apiserver does. Prints each step; exits non-zero if anything is off."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    port, mport = free_port(), free_port()
    print(f"$ sidecar-injector serve --host 127.0.0.1 --port {port} --metrics-port {mport}")
    server = subprocess.Popen(
        ["sidecar-injector", "serve", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(mport),
         "--drain-delay", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert server.stdout is not None
    ca_bundle = None
    deadline = time.time() + 30
    lines = []
    while time.time() < deadline and ca_bundle is None:
        line = server.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"(/\S+ca\.crt)", line)
        if m:
            ca_bundle = m.group(1)
    if ca_bundle is None:
        print("".join(lines))
        print("demo: the server did not print its CA bundle", file=sys.stderr)
        server.kill()
        return 1
    print(f"  CA bundle: {ca_bundle}")
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{mport}/readyz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)

    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "test-5d7f9c6b8-", "labels": {"component": "test"}},
           "spec": {"containers": [{"name": "test", "image": "nginx:1.27"}]}}
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "quickstart-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                          "resource": {"group": "", "version": "v1", "resource": "pods"},
                          "namespace": "default", "operation": "CREATE", "object": pod}}
    ctx = ssl.create_default_context(cafile=ca_bundle)
    req = urllib.request.Request(f"https://127.0.0.1:{port}/mutate?timeout=10s", data=json.dumps(review).encode(),
                                 headers={"Content-Type": "application/json"})
    print("\nPOST /mutate with the seed article's pod (component=test), verified against the CA bundle:")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
        answer = json.loads(r.read())
    response = answer["response"]
    print(f"  allowed={response['allowed']} uid={response['uid']} patchType={response.get('patchType')}")
    print("  the decoded JSON Patch:")
    for op in json.loads(base64.b64decode(response["patch"])):
        print(f"    {op['op']} {op['path']}: {json.dumps(op['value'])[:100]}")

    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        metrics = [ln for ln in r.read().decode().splitlines() if ln.startswith("sidecar_injector_") and "_total" in ln]
    print("\nGET /metrics (excerpt):")
    for ln in metrics[:6]:
        print(f"  {ln}")

    server.send_signal(signal.SIGTERM)
    rest = server.communicate(timeout=30)[0]
    log = [ln for ln in rest.splitlines() if '"uid": "quickstart-1"' in ln or '"uid":"quickstart-1"' in ln]
    if log:
        print(f"\nthe server's log line for it:\n  {log[0]}")
    print(f"\nserver stopped on SIGTERM with exit code {server.returncode}")
    ok = server.returncode == 0 and response["allowed"] and "foo" in json.dumps(json.loads(
        base64.b64decode(response["patch"])))
    print("\nNext: scripts/quickstart --serve keeps it running; scripts/test runs every test.\n"
          "The command is in .venv/bin: `.venv/bin/sidecar-injector --help` lists the commands, or put it on\n"
          'your PATH for this shell with `export PATH="$PWD/.venv/bin:$PATH"` (or `source .venv/bin/activate`).')
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
