"""Shared fixtures. Real test material lives in ../shared/data beside the repository (never copied in)."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; a missing folder is a failure, never a silent skip."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"test material not found at {SHARED_DATA}: clone the repository beside ../shared")
    return SHARED_DATA
