from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from smtp_harness import AcceptAll, Chunking, bytewise, sevens, whole


@pytest.fixture(params=[whole, bytewise, sevens], ids=["whole", "bytewise", "sevens"])
def chunking(request: pytest.FixtureRequest) -> Chunking:
    """How the client's bytes are cut into reads; every test must pass under each."""
    cut: Chunking = request.param
    return cut


@pytest.fixture
def session(chunking: Chunking) -> Callable[..., AcceptAll]:
    """Build an accept-everything session that feeds with the current chunking."""
    return partial(AcceptAll, chunking=chunking)
