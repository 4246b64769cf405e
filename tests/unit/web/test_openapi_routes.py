"""The OpenAPI document lists exactly the routes the app serves under /api/v1: every path
and method the Starlette app routes is documented, and nothing documented is missing."""

from __future__ import annotations

import io
import re
from pathlib import Path

from starlette.routing import Route

from hato.accounts import AccountStore
from hato.config import load_settings
from hato.events import EventLog
from hato.web import EventHub, WebContext, WebUsers, build_app
from hato.web._openapi import openapi_document

PREFIX = "/api/v1"
# Served without credentials, and not an operation of the API itself.
UNDOCUMENTED = {("GET", "/api/v1/openapi.json")}


def _served(tmp_path: Path) -> set[tuple[str, str]]:
    settings = load_settings(overrides={"server.data_dir": str(tmp_path)})
    context = WebContext(
        settings=settings,
        accounts=AccountStore(tmp_path / "accounts.sqlite3"),
        users=WebUsers(tmp_path / "web.sqlite3"),
        hub=EventHub(buffer=10),
        log=EventLog(stream=io.StringIO()),
        usage=lambda domain, local, quota: 0,
    )
    served = set()
    for route in build_app(context).routes:
        if isinstance(route, Route) and route.path.startswith(PREFIX):
            # {name:str} in Starlette is {name} in OpenAPI.
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
            served |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return served


def _documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }


def test_the_document_lists_exactly_the_served_routes(tmp_path: Path) -> None:
    served = _served(tmp_path) - UNDOCUMENTED
    documented = _documented()
    # /queue/{queue_id}/{action} is served as one route and documented per action.
    generic = ("POST", "/api/v1/queue/{queue_id}/{action}")
    assert generic in served
    actions = {("POST", f"/api/v1/queue/{{queue_id}}/{a}") for a in ("hold", "release", "flush")}
    assert actions <= documented
    served = (served - {generic}) | actions
    assert sorted(served - documented) == [], "served but not in the OpenAPI document"
    assert sorted(documented - served) == [], "documented but not served"


def test_every_change_documents_its_refusals() -> None:
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            if method != "get":
                assert "403" in operation["responses"], f"{method.upper()} {path}"
            assert "400" in operation["responses"], f"{method.upper()} {path}"
