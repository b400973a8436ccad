"""Fixtures of the codec tests."""

import pytest
from codec_data import make_vdfs


@pytest.fixture(scope="session")
def beams():
    return make_vdfs(12, seed=1)


@pytest.fixture(scope="session")
def train_beams():
    return make_vdfs(80, seed=2)
