"""The reference reader: kubectl's own YAML reading, as a small Go program (test-only).

kubectl splits a stream with ``k8s.io/apimachinery/pkg/util/yaml.NewYAMLReader`` and reads
each document with ``sigs.k8s.io/yaml`` (YAML to JSON). ``yaml2json`` does exactly that and
prints one line of JSON per document: ``{"json": <the document>}`` or ``{"error": "..."}``.

Built like the Kubernetes test binaries (``tests/e2e/binaries.py``): a wrapper module fetched
through the Go module proxy, pinned here, built once into
``~/.cache/sidecar-injector/tools/yaml2json-<versions>/``. Run ``python tests/offline/reference.py``
to build it and print its path.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

SIGS_YAML_VERSION = "v1.6.0"
APIMACHINERY_VERSION = "v0.37.2"

MAIN_GO = r"""package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Reads a YAML stream on stdin as kubectl does and prints one JSON line per document.
func main() {
	r := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			line, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Fprintln(out, string(line))
			return
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			line, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Fprintln(out, string(line))
			continue
		}
		fmt.Fprintf(out, "{\"json\":%s}\n", j)
	}
}
"""


class ReferenceUnavailable(RuntimeError):
    """Go or the module proxy is not available here."""


def tool_path() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    name = f"yaml2json-sigs-{SIGS_YAML_VERSION}-apimachinery-{APIMACHINERY_VERSION}"
    return base / "sidecar-injector" / "tools" / name / "yaml2json"


def ensure() -> Path:
    out = tool_path()
    if out.is_file() and os.access(out, os.X_OK):
        return out
    if shutil.which("go") is None:
        raise ReferenceUnavailable("Go is not installed: the reference reader is built with Go")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / "build"
    work.mkdir(exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-mod=mod -buildvcs=false")
    with (out.parent / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        (work / "main.go").write_text(MAIN_GO)
        (work / "go.mod").write_text(
            "module local/yaml2json\n\ngo 1.26\n\n"
            f"require (\n\tsigs.k8s.io/yaml {SIGS_YAML_VERSION}\n\tk8s.io/apimachinery {APIMACHINERY_VERSION}\n)\n"
        )
        for cmd in (["go", "mod", "tidy"], ["go", "build", "-trimpath", "-o", str(out) + ".partial", "."]):
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ReferenceUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-2000:]}")
        os.replace(str(out) + ".partial", out)
    return out


def to_json_lines(data: bytes) -> list[dict[str, object]]:
    """Every document of ``data`` as kubectl reads it: ``{"json": ...}`` or ``{"error": ...}``."""
    import json

    proc = subprocess.run([str(ensure())], input=data, capture_output=True, check=True, timeout=300)
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


if __name__ == "__main__":
    try:
        print(ensure())
    except ReferenceUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
