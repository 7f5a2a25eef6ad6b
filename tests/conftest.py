"""Shared test fixtures: device from IMDN_TEST_DEVICE, the read-only reference data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import imdn_plugin  # noqa: F401  (installs the torchvision alias before basicsr is imported)

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device(os.environ.get("IMDN_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="session")
def reference() -> Path:
    """``../shared/reference`` (authors' weights + Set5); skips when absent."""
    if not (REFERENCE / "checkpoints").is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (authors' weights and Set5 are not redistributed)")
    return REFERENCE
