"""Shared pytest fixtures for medseg_lab."""
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"

@pytest.fixture(scope="session")
def repo() -> Path:
    "The repository root."
    return REPO

@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    "Keep the data cache of the tests apart from the user's, but shared across tests of one session."
    cache = tmp_path_factory.getbasetemp() / "medseg_cache"
    monkeypatch.setenv("MEDSEG_LAB_CACHE", os.environ.get("MEDSEG_LAB_TEST_CACHE", str(cache)))
