"""Issue 13's small things: LICENSE, the lock file, the Dockerfile, generated YAML, short flags, a missing
dependency."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sidecar_injector.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_apache_license_the_package_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def _locked() -> dict[str, tuple[str, list[str]]]:
    text = (ROOT / "requirements.lock").read_text()
    out: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.-]+)==([^\s\\]+)", block)
        if m:
            out[canonicalize_name(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    locked = _locked()
    assert len(locked) >= 20
    for name, (_, hashes) in locked.items():
        assert hashes, f"{name} has no hash"
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock: run scripts/lock"
        version = locked[name][0]
        assert req.specifier.contains(version, prereleases=True), f"{name} {version} not {req.specifier}"
    # The full schemas and the test tools stay out of the runtime.
    for test_only in ("kubernetes-validate", "kubernetes", "pytest", "hypothesis"):
        assert test_only not in locked


def test_the_dockerfile_installs_the_lock_slims_and_labels_the_image() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in text
    assert "--no-deps ." in text
    assert "scripts/slim-runtime /opt/venv/lib/python3.11/site-packages" in text
    for label in ("source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text


def _generated_yaml() -> list[Path]:
    return sorted([*(ROOT / "deploy").rglob("*.yaml"), *(ROOT / "charts").rglob("*.yaml")])


def test_generated_yaml_has_no_anchors_and_modes_are_decimal() -> None:
    files = _generated_yaml()
    assert len(files) > 40
    for path in files:
        text = path.read_text()
        assert not re.search(r"[&*]id\d{3}", text), f"{path}: a PyYAML anchor or alias"
        for mode in re.findall(r"(?:defaultMode|\bmode): *(\d\S*)", text):  # a number: not `mode: job`
            assert re.fullmatch(r"[1-9]\d*", mode), f"{path}: file mode {mode} is not written in decimal"
    deployment = yaml.safe_load((ROOT / "deploy" / "deployment-sidecar-injector.yaml").read_text())
    [tls] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"]
    assert tls["secret"]["defaultMode"] == 0o440 == 288


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_with_a_namespace_or_a_config_has_n_and_c() -> None:
    checked = 0
    for name, parser in _subcommands().items():
        for action in parser._actions:
            if "--namespace" in action.option_strings:
                assert "-n" in action.option_strings, f"{name} --namespace has no -n"
                checked += 1
            if "--config" in action.option_strings:
                assert "-c" in action.option_strings, f"{name} --config has no -c"
                checked += 1
    assert checked >= 8


def test_a_missing_dependency_is_one_line_not_a_traceback() -> None:
    program = ("import sys; sys.modules['lightkube'] = None\n"
               "from sidecar_injector.cli import main\n"
               "sys.exit(main(['certs', '--apply', '--service', 's', '-n', 'ns', '--secret', 'x',"
               " '--webhook-config', 'y']))")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "sidecar-injector: error: certs needs the Python package 'lightkube', which is not installed here: "
        "reinstall with `pip install sidecar-injector` (with its dependencies)"]


@pytest.mark.parametrize("script", ["quickstart", "test", "setup", "lock", "slim-runtime"])
def test_scripts_are_executable(script: str) -> None:
    assert (ROOT / "scripts" / script).stat().st_mode & 0o111
