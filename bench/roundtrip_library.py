"""What a round-trip YAML library would cost ``inject``, against editing the text in place.

ruamel.yaml is the maintained round-trip library for Python (comments, key order, quoting and
block scalars survive a load and a dump). ``inject`` only needs it for the documents it
changes, so this measures the least it would cost: loading and dumping, with
``YAML(typ="rt")``, only the pod-bearing documents of the bench stream (no injection at all),
against what this project does for the same documents (libyaml nodes with positions, values
by kubectl's rules: :mod:`sidecar_injector.yamlio.read`). CPU seconds, best of ``--runs``.

ruamel.yaml is not a dependency: install it anywhere and point ``--ruamel`` at it, e.g.

    pip install --target /tmp/ruamel-measure ruamel.yaml
    .venv/bin/python bench/offline_inject.py            # writes the stream
    .venv/bin/python bench/roundtrip_library.py --ruamel /tmp/ruamel-measure
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

from sidecar_injector.yamlio.read import parse, to_python
from sidecar_injector.yamlio.stream import POD_KINDS, chunks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ruamel", type=Path, required=True, help="where ruamel.yaml is installed")
    ap.add_argument("--stream", type=Path, default=Path("/tmp/sidecar-injector-bench-corpus.yaml"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(args.ruamel))
    from ruamel.yaml import YAML  # type: ignore[import-not-found]

    text = args.stream.read_text(encoding="utf-8")
    parts = [text[a:b] for a, b in chunks(text)]
    pods = [p for p in parts if any(f"\nkind: {k}\n" in "\n" + p for k in POD_KINDS)]
    print(f"{len(pods)} pod-bearing documents of {len(parts)}, {sum(map(len, pods)) / 1e6:.1f} MB")

    def ours() -> None:
        for p in pods:
            for d in parse(p):
                if d.root is not None:
                    to_python(d.root)

    def ruamel() -> None:
        y = YAML(typ="rt")
        y.width = 4096
        for p in pods:
            data = y.load(p)
            out = io.StringIO()
            y.dump(data, out)

    for name, fn in (("libyaml nodes + kubectl values (ours)", ours), ("ruamel.yaml load + dump", ruamel)):
        best = min(_cpu(fn) for _ in range(args.runs))
        print(f"{name:40} {best:6.2f} s CPU")


def _cpu(fn: object) -> float:
    t0 = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - t0


if __name__ == "__main__":
    main()
