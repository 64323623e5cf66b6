"""Shared test fixtures: the Kaldi ground truth in ../shared/fixtures/kaldi (skipped when absent)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KALDI_FIXTURES = Path(
    os.environ.get("XVJAX_KALDI_FIXTURES", REPO.parent / "shared" / "fixtures" / "kaldi")
)


@pytest.fixture(scope="session")
def kaldi_fixtures() -> Path:
    """Path to ../shared/fixtures/kaldi; tests that need it skip with the reason when it is absent."""
    if not KALDI_FIXTURES.is_dir():
        pytest.skip(f"Kaldi reference fixtures not found at {KALDI_FIXTURES} (../shared is absent)")
    return KALDI_FIXTURES


@pytest.fixture
def restore_logging():
    """cli.run points the root logger at the (captured) stderr; undo that after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_collection_modifyitems(config, items):
    """Modules with `slow` tests run first, so that with `pytest -n 2 --dist loadfile` (make test)
    the long end-to-end modules start early and the quick ones fill in around them."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: keeps the order otherwise
