"""Fixtures of the data tests: the miniature datasets of mbtest.datasets, built once."""

import pytest
from mbtest.datasets import make_all


@pytest.fixture(scope="session")
def fixture_roots(tmp_path_factory):
    """All miniature datasets, built once per session: {dataset class: root}."""
    return make_all(tmp_path_factory.mktemp("datasets"))
