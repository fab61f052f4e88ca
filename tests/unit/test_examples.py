"""Every example in examples/ is run: `inject` must produce its expected.yaml exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("[0-9]*"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_injects_as_expected(example: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sidecar_injector", "inject", "-f", str(example / "input.yaml"),
         "--config", str(example / "config.yaml")],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out == (example / "expected.yaml").read_text()
    again = subprocess.run(
        [sys.executable, "-m", "sidecar_injector", "inject", "-f", "-", "--config", str(example / "config.yaml")],
        input=out, capture_output=True, text=True, check=True,
    ).stdout
    assert again == out, "injecting an injected manifest must change nothing"
