from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hato.accounts import AccountStore
from hato.routing import LocalRouter

HOSTNAME = "mx.test.example"
CONFIG_DOMAINS = ("localhost", HOSTNAME, "example.com")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AccountStore]:
    """A store with example.com (config), bücher.example (store) and a few users."""
    with AccountStore(tmp_path / "accounts.sqlite3", config_domains=CONFIG_DOMAINS) as s:
        s.add_domain("bücher.example")
        s.add_user("alice@example.com", quota=1000)
        s.add_user("Bob@example.com")
        s.add_user("jörg@bücher.example")
        yield s


@pytest.fixture
def make_router(store: AccountStore) -> Callable[..., LocalRouter]:
    def make(**options: object) -> LocalRouter:
        settings: dict[str, object] = {"config_domains": CONFIG_DOMAINS, "hostname": HOSTNAME}
        settings.update(options)
        return LocalRouter(store, **settings)  # type: ignore[arg-type]

    return make


@pytest.fixture
def router(make_router: Callable[..., LocalRouter]) -> LocalRouter:
    return make_router()
