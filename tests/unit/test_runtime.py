"""The slim runtime: scripts/slim-runtime keeps what the product imports, and CEL still works after it.

The size budget itself (site-packages of a fresh `pip install .` at most 80 MiB after slimming)
is measured by ``bench/runtime_size.py`` (it installs from PyPI, minutes): run here only with
``SI_MEASURE_RUNTIME=1``, and reported in the README.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cel_expr_python
import pytest

ROOT = Path(__file__).resolve().parents[2]
SLIM = ROOT / "scripts" / "slim-runtime"
BUDGET_MIB = 80


def _imported_cel_extensions() -> set[str]:
    tree = ast.parse((ROOT / "src" / "sidecar_injector" / "core" / "cel.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cel_expr_python.ext":
            found |= {alias.name for alias in node.names}
    return found


def _installed_cel_extensions() -> set[str]:
    ext = Path(next(iter(cel_expr_python.__path__))) / "ext"
    return {p.name.split(".")[0] for p in ext.glob("*.so")}


def _removed_by_script() -> set[str]:
    m = re.search(r'^UNUSED_CEL_EXTENSIONS="([^"]*)"', SLIM.read_text(), re.M)
    assert m
    return set(m.group(1).split())


def test_slim_removes_exactly_the_cel_extensions_the_product_does_not_import() -> None:
    imported, installed = _imported_cel_extensions(), _installed_cel_extensions()
    assert imported and imported <= installed
    assert _removed_by_script() == installed - imported
    # Nothing else in the package imports cel_expr_python.
    for path in (ROOT / "src" / "sidecar_injector").rglob("*.py"):
        if path.name != "cel.py" or path.parent.name != "core":
            assert "cel_expr_python" not in path.read_text(), path


@pytest.mark.skipif(shutil.which("strip") is None, reason="strip (binutils) is not installed")
def test_the_product_imports_and_evaluates_cel_after_slimming(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copytree(Path(next(iter(cel_expr_python.__path__))), site / "cel_expr_python")
    shutil.copytree(ROOT / "src" / "sidecar_injector", site / "sidecar_injector")
    before = sum(p.stat().st_size for p in (site / "cel_expr_python").rglob("*") if p.is_file())
    subprocess.run(["sh", str(SLIM), str(site)], check=True)
    after = sum(p.stat().st_size for p in (site / "cel_expr_python").rglob("*") if p.is_file())
    assert after < before * 0.6, (before, after)
    assert {p.name.split(".")[0] for p in (site / "cel_expr_python" / "ext").glob("*.so")} == _imported_cel_extensions()
    program = textwrap.dedent("""
        import cel_expr_python, sys
        from sidecar_injector.core import cel
        assert list(cel_expr_python.__path__)[0].startswith(sys.argv[1]), cel_expr_python.__path__
        pod = {"metadata": {"name": "web-1", "labels": {"app": "web"}},
               "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]}}
        conds = [cel.compile_condition("c", e, "test") for e in (
            "object.metadata.name.startsWith('web') && object.metadata.name.upperAscii() == 'WEB-1'",
            "object.spec.containers.exists(c, c.name == 'istio-proxy')",
            "math.greatest(1, size(object.spec.containers)) == 2",
            "cel.bind(n, object.metadata.name, n.split('-').size() == 2)",
            "optional.of(object.metadata.labels.app).hasValue()",
        )]
        assert cel.evaluate(conds, pod) is None, "a condition was false"
        assert cel.evaluate([cel.compile_condition("d", "object.metadata.name == 'x'", "test")], pod) is not None
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", program, str(site)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


@pytest.mark.skipif(os.environ.get("SI_MEASURE_RUNTIME") != "1", reason="installs from PyPI: SI_MEASURE_RUNTIME=1")
def test_the_installed_runtime_is_within_budget() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "runtime_size.py"), "--slim", "--lock", "--no-timing"],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr
    m = re.search(r"site-packages apparent size: ([\d.]+) MiB", out.stdout)
    assert m and float(m.group(1)) <= BUDGET_MIB, out.stdout
