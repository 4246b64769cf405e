"""The console's accounts page: domains, users and aliases, and (for admins) the forms that
add and remove domains and users and set passwords and quotas, through the same functions
as the API (``_api_accounts``) and so the same rules and warnings as ``hato domain`` and
``hato user``. Every form carries the session's CSRF token; a read-only user sees no form,
and one posted anyway is refused (403).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from hato.accounts import AccountAdmin, AccountError, Change, InvalidInput
from hato.web._api_accounts import (
    account_admin,
    add_domain,
    change_user,
    domain_rows,
    quota_value,
    remove_domain,
    remove_user,
    user_row,
)
from hato.web._app import ApiError, WebContext
from hato.web._console import Console, Viewer, _first, _read_form

__all__ = ["account_pages"]

ACTIONS = ("add-domain", "remove-domain", "add-user", "remove-user", "set-password", "set-quota")

Page = Callable[[Request, Console, Viewer], Awaitable[Response]]
Wrap = Callable[[Page], Callable[[Request], Awaitable[Response]]]


async def _accounts(request: Request, console: Console, viewer: Viewer) -> Response:
    context = console.context

    def read() -> dict[str, Any]:
        rows = domain_rows(context)
        for row in rows:
            row["where"] = " and ".join(w for w in ("config", "store") if row[w])
        users = [user_row(context, user) for user in context.accounts.users(None)]
        return {"domains": rows, "users": users, "aliases": context.accounts.aliases()}

    values = await asyncio.to_thread(read)
    return console.render(
        "accounts.html",
        viewer,
        "accounts",
        done=request.query_params.get("done", ""),
        warnings=request.query_params.getlist("warning"),
        **values,
    )


def _domain_added(context: WebContext, admin: AccountAdmin, values: dict[str, list[str]]) -> Change:
    result = add_domain(
        context,
        admin,
        _first(values, "domain"),
        dkim=bool(_first(values, "dkim")),
        ed25519=bool(_first(values, "ed25519")),
    )
    done = result["done"]
    for key in result["dkim"]:
        made = "made the" if key["made"] else "kept the existing"
        done += f"; {made} DKIM key {key['selector']} ({key['algorithm']}): publish it (DNS page)"
    return Change(done=done, warnings=tuple(result["warnings"]), domain=result["domain"])


def _user_changed(
    context: WebContext, admin: AccountAdmin, address: str, key: str, value: Any
) -> Change:
    _, done = change_user(context, admin, address, {key: value})
    return done[0]


def _apply(context: WebContext, action: str, values: dict[str, list[str]]) -> Change:
    """One form's change (blocking); the store's refusals as ApiError 400/409."""
    admin = account_admin(context, force_hint='the box "with its users and aliases"')
    address = _first(values, "address").strip()
    try:
        if action == "add-domain":
            return _domain_added(context, admin, values)
        if action == "remove-domain":
            force = bool(_first(values, "force"))
            return remove_domain(context, admin, _first(values, "domain"), force)
        if action == "add-user":
            password = _first(values, "password") or None
            quota = quota_value(_first(values, "quota"))
            return admin.add_user(address, password, quota)
        if action == "remove-user":
            return remove_user(context, admin, address)
        if action == "set-password":
            password = _first(values, "password")
            if not password and not _first(values, "clear"):
                raise ApiError(400, 'type the new password (or tick "no password")')
            return _user_changed(context, admin, address, "password", password or None)
        return _user_changed(context, admin, address, "quota", quota_value(_first(values, "quota")))
    except InvalidInput as error:
        raise ApiError(400, str(error)) from None
    except AccountError as error:
        raise ApiError(409, str(error)) from None


async def _accounts_action(request: Request, console: Console, viewer: Viewer) -> Response:
    values = await _read_form(request)
    if not hmac.compare_digest(_first(values, "csrf").encode(), viewer.csrf.encode()):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")
    if not viewer.may_write:
        raise ApiError(403, f"{viewer.name} is {viewer.role}: it may only read")
    action = _first(values, "action")
    if action not in ACTIONS:
        raise ApiError(400, f"no accounts action {action!r}; use one of {', '.join(ACTIONS)}")
    change = await asyncio.to_thread(_apply, console.context, action, values)
    query = [("done", change.done), *(("warning", text) for text in change.warnings)]
    return RedirectResponse("/accounts?" + urlencode(query), status_code=303)


def account_pages(page: Wrap) -> list[BaseRoute]:
    """The accounts page and its forms, each wrapped by the console's ``page``."""
    return [
        Route("/accounts", page(_accounts), methods=["GET"]),
        Route("/accounts", page(_accounts_action), methods=["POST"]),
    ]
