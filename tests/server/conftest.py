"""Fixtures for the webhook server tests (the helpers they use are in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import BENCH_CONFIG, PKI, RunningServer, make_pki, start_server


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(BENCH_CONFIG)
    return path


@pytest.fixture
def server(pki: PKI, config_file: Path) -> Iterator[RunningServer]:
    s = start_server(pki, config_file)
    yield s
    s.stop()
