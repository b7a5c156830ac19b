import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures  # noqa: E402


@pytest.fixture(scope="session")
def fixture_roots(tmp_path_factory):
    """All miniature datasets, built once per session: {dataset class: root}."""
    return fixtures.make_all(tmp_path_factory.mktemp("datasets"))
