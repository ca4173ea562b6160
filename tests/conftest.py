"""Shared fixtures: one tiny synthetic data set in the Market-1501 layout for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic Market-1501-layout data set (small images, few ids), made once."""
    from kdas.data.synthetic import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("tiny_market")
    return synthesize(
        out, SynthConfig(ids=16, cameras=3, images_per_camera=3, size=(64, 32), seed=0)
    )
