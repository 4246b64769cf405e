"""The accounts API under /api/v1/accounts: domains, users and aliases, read and changed
through ``accounts.AccountAdmin``, the same rules and warnings as ``hato domain`` and
``hato user``.

- A change answers with ``done`` (what ``hato`` would print) and ``warnings`` (what it
  would print on stderr: an alias that keeps mail out of a new mailbox, a quota below
  what the mailbox holds, users removed with their domain); a refusal is a 4xx JSON error
  naming what to do: 400 for malformed input, 404 for what does not exist, 409 for a
  change the store's state refuses.
- Adding a domain makes its DKIM key as ``hato domain add`` does (RSA, ed25519 beside it
  on request, none with ``"dkim": false``) and answers with the record to publish.
- Every store access runs in a thread: password hashing (scrypt) and SQLite never run on
  the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from hato.accounts import (
    AccountAdmin,
    Change,
    User,
    display_domain,
    normalize_domain,
    parse_address,
    parse_size,
)
from hato.mailauth import DkimKeyError, DkimKeys, dns_record, domain_key_algorithms
from hato.routing import shadowing_alias
from hato.web._app import ApiError, Handler, WebContext, _json_body, _strings

__all__ = [
    "account_admin",
    "account_routes",
    "add_domain",
    "change_user",
    "domain_rows",
    "quota_value",
    "remove_domain",
    "remove_user",
    "user_row",
]

# The key store's directory under the data directory (as app.py and hato dkim keep it).
DKIM_DIR = "dkim"
_DOMAIN_KEYS = frozenset({"domain", "dkim", "ed25519"})
_USER_KEYS = frozenset({"address", "password", "quota"})
_CHANGE_KEYS = frozenset({"password", "quota"})


def account_admin(context: WebContext, *, force_hint: str) -> AccountAdmin:
    store, router = context.accounts, context.router
    return AccountAdmin(
        store,
        config_domains=context.settings.server.local_domains,
        usage=context.usage,
        shadowing=(lambda user: shadowing_alias(router, store, user)) if router else None,
        force_hint=force_hint,
    )


def _api_admin(context: WebContext) -> AccountAdmin:
    return account_admin(context, force_hint="?force=true")


def _known(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(
            400, f"unknown field {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false")
    return value


def quota_value(value: Any) -> int | None:
    """A quota from JSON or a form: bytes, a size such as "500M" or "2G", or null/"none"."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, bool):
        raise ApiError(400, "quota is bytes (a number), a size such as 500M or 2G, or null")
    if isinstance(value, int):
        if value <= 0:
            raise ApiError(400, "a quota must be more than 0 bytes (null: no quota)")
        return value
    if isinstance(value, str):
        return parse_size(value)
    raise ApiError(400, "quota is bytes (a number), a size such as 500M or 2G, or null")


def _password(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ApiError(400, "password must be a string (null: none, the user cannot log in)")


def _change_dict(change: Change) -> dict[str, Any]:
    return {"done": change.done, "warnings": list(change.warnings)}


def user_row(context: WebContext, user: User) -> dict[str, Any]:
    return {**asdict(user), "usage": context.usage(user.domain, user.local_part, user.quota)}


def domain_rows(context: WebContext) -> list[dict[str, Any]]:
    """Every local domain, from the configuration and the store, with its counts (blocking)."""
    store = context.accounts
    configured = context.settings.server.local_domains
    stored = store.domains()
    rows = []
    for name in sorted({*configured, *stored}):
        users, aliases = store.counts(name)
        rows.append(
            {
                "domain": name,
                "unicode": display_domain(name),
                "config": name in configured,
                "store": name in stored,
                "users": users,
                "aliases": aliases,
            }
        )
    return rows


# -- domains ----------------------------------------------------------------------------------


def _domain_keys(context: WebContext, domain: str, ed25519: bool) -> list[dict[str, Any]]:
    """As ``hato domain add``: the domain's active keys, made where missing (blocking)."""
    keys = DkimKeys(context.data_dir / DKIM_DIR, retire_after=context.settings.dkim.retire_after)
    made = []
    for algorithm in domain_key_algorithms(ed25519=ed25519):
        key, new = keys.ensure_active(domain, algorithm)
        record = dns_record(key)
        made.append(
            {
                "selector": key.selector,
                "algorithm": key.algorithm,
                "state": key.state,
                "made": new,
                "record": {
                    "name": record.name,
                    "type": "TXT",
                    "value": record.value,
                    "zone": record.zone_line,
                },
            }
        )
    return made


def add_domain(
    context: WebContext, admin: AccountAdmin, name: str, *, dkim: bool, ed25519: bool
) -> dict[str, Any]:
    """Add the domain and, unless told not to, make its DKIM keys (blocking)."""
    change = admin.add_domain(name)
    domain = change.domain or normalize_domain(name)
    result: dict[str, Any] = {
        "domain": domain,
        "unicode": display_domain(domain),
        **_change_dict(change),
        "dkim": [],
    }
    if dkim:
        try:
            result["dkim"] = _domain_keys(context, domain, ed25519)
        except DkimKeyError as error:  # the domain stays; its key can be made later
            result["warnings"].append(
                f"no DKIM key was made ({error}); make one with: hato dkim keygen {domain}"
            )
    return result


async def _domain_add(request: Request, context: WebContext) -> Response:
    body = await _json_body(request)
    _known(body, _DOMAIN_KEYS)
    name = body.get("domain")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(400, "domain is required: the domain name to make local")
    dkim, ed25519 = _flag(body, "dkim", True), _flag(body, "ed25519", False)
    result = await asyncio.to_thread(
        add_domain, context, _api_admin(context), name, dkim=dkim, ed25519=ed25519
    )
    return JSONResponse(result, status_code=201)


def remove_domain(context: WebContext, admin: AccountAdmin, name: str, force: bool) -> Change:
    """Remove the domain; 404 when it is not local at all (blocking)."""
    domain = normalize_domain(name)
    if not context.accounts.is_local_domain(domain):
        raise ApiError(404, f"domain {domain} is not local (GET /api/v1/accounts/domains)")
    return admin.remove_domain(domain, force=force, where="the configuration file")


async def _domain_remove(request: Request, context: WebContext) -> Response:
    name = request.path_params["domain"]
    force_text = request.query_params.get("force", "false").lower()
    if force_text not in ("true", "false", "1", "0"):
        raise ApiError(400, f"force is true or false, not {force_text!r}")
    force = force_text in ("true", "1")
    change = await asyncio.to_thread(remove_domain, context, _api_admin(context), name, force)
    return JSONResponse({"removed": change.domain, **_change_dict(change)})


# -- users ------------------------------------------------------------------------------------


async def _user_add(request: Request, context: WebContext) -> Response:
    body = await _json_body(request)
    _known(body, _USER_KEYS)
    address = body.get("address")
    if not isinstance(address, str) or not address.strip():
        raise ApiError(400, "address is required: local-part@a-local-domain")
    password, quota = _password(body.get("password")), quota_value(body.get("quota"))

    def add() -> dict[str, Any]:
        change = _api_admin(context).add_user(address, password, quota)
        assert change.user is not None
        return {"user": user_row(context, change.user), **_change_dict(change)}

    return JSONResponse(await asyncio.to_thread(add), status_code=201)


def change_user(
    context: WebContext, admin: AccountAdmin, address: str, changes: dict[str, Any]
) -> tuple[User, list[Change]]:
    """Apply ``password`` and/or ``quota`` (already checked) to an existing user (blocking)."""
    if context.accounts.get_user(address) is None:
        raise ApiError(404, f"no such user: {parse_address(address).text}")
    done = []
    if "password" in changes:
        done.append(admin.set_password(address, changes["password"]))
    if "quota" in changes:
        done.append(admin.set_quota(address, changes["quota"]))
    return admin.existing_user(address), done


async def _user_change(request: Request, context: WebContext) -> Response:
    """``{"password": ...}`` and/or ``{"quota": ...}``; null removes either."""
    address = request.path_params["address"]
    body = await _json_body(request)
    _known(body, _CHANGE_KEYS)
    if not body:
        raise ApiError(400, "give password and/or quota to change")
    changes: dict[str, Any] = {}
    if "password" in body:
        changes["password"] = _password(body["password"])
    if "quota" in body:
        changes["quota"] = quota_value(body["quota"])

    def change() -> dict[str, Any]:
        user, done = change_user(context, _api_admin(context), address, changes)
        return {
            "user": user_row(context, user),
            "done": "; ".join(c.done for c in done),
            "warnings": [w for c in done for w in c.warnings],
        }

    return JSONResponse(await asyncio.to_thread(change))


def remove_user(context: WebContext, admin: AccountAdmin, address: str) -> Change:
    if context.accounts.get_user(address) is None:
        raise ApiError(404, f"no such user: {parse_address(address).text}")
    return admin.remove_user(address)


async def _user_remove(request: Request, context: WebContext) -> Response:
    address = request.path_params["address"]
    change = await asyncio.to_thread(remove_user, context, _api_admin(context), address)
    removed = change.user.address if change.user is not None else address
    return JSONResponse({"removed": removed, **_change_dict(change)})


async def _domains(request: Request, context: WebContext) -> Response:
    return JSONResponse({"domains": await asyncio.to_thread(domain_rows, context)})


async def _users(request: Request, context: WebContext) -> Response:
    wanted = request.query_params.get("domain")
    domain = normalize_domain(wanted) if wanted else None

    def read() -> list[dict[str, Any]]:
        if domain is not None and not context.accounts.is_local_domain(domain):
            raise ApiError(404, f"domain {domain} is not local")
        return [user_row(context, u) for u in context.accounts.users(domain)]

    return JSONResponse({"users": await asyncio.to_thread(read)})


# -- aliases ----------------------------------------------------------------------------------


async def _aliases(request: Request, context: WebContext) -> Response:
    found = await asyncio.to_thread(context.accounts.aliases)
    return JSONResponse({"aliases": [asdict(a) for a in found]})


def _targets_of(body: dict[str, Any]) -> list[str]:
    targets = _strings(body, "targets")
    if not targets:
        raise ApiError(400, "targets must be a non-empty array of addresses")
    return targets


async def _alias_add(request: Request, context: WebContext) -> Response:
    body = await _json_body(request)
    source = body.get("source")
    if not isinstance(source, str) or not source:
        raise ApiError(400, "source must be an address, or @domain for a catch-all")
    targets = _targets_of(body)
    added = await asyncio.to_thread(context.accounts.add_alias, source, targets)
    return JSONResponse(asdict(added), status_code=201)


async def _alias_change(request: Request, context: WebContext) -> Response:
    """Replace the alias's targets with the ones given."""
    source = request.path_params["source"]
    targets = _targets_of(await _json_body(request))
    store = context.accounts

    def change() -> Any:
        if store.get_alias(source) is None:
            raise ApiError(404, f"no alias {source}")
        store.remove_alias(source)
        return store.add_alias(source, targets)

    return JSONResponse(asdict(await asyncio.to_thread(change)))


async def _alias_remove(request: Request, context: WebContext) -> Response:
    source = request.path_params["source"]
    target = request.query_params.get("target") or None
    store = context.accounts

    def remove() -> None:
        if store.get_alias(source) is None:
            raise ApiError(404, f"no alias {source}")
        store.remove_alias(source, target)

    await asyncio.to_thread(remove)
    return JSONResponse({"removed": source, "target": target})


# -- routes -----------------------------------------------------------------------------------

Wrap = Callable[[Handler], Callable[[Request], Awaitable[Response]]]


def account_routes(api: Wrap) -> list[BaseRoute]:
    """The routes of this module, each wrapped by ``api`` (access control, JSON errors)."""
    prefix = "/api/v1/accounts"
    return [
        Route(f"{prefix}/domains", api(_domains), methods=["GET"]),
        Route(f"{prefix}/domains", api(_domain_add), methods=["POST"]),
        Route(f"{prefix}/domains/{{domain:str}}", api(_domain_remove), methods=["DELETE"]),
        Route(f"{prefix}/users", api(_users), methods=["GET"]),
        Route(f"{prefix}/users", api(_user_add), methods=["POST"]),
        Route(f"{prefix}/users/{{address:str}}", api(_user_change), methods=["PUT"]),
        Route(f"{prefix}/users/{{address:str}}", api(_user_remove), methods=["DELETE"]),
        Route(f"{prefix}/aliases", api(_aliases), methods=["GET"]),
        Route(f"{prefix}/aliases", api(_alias_add), methods=["POST"]),
        Route(f"{prefix}/aliases/{{source:str}}", api(_alias_change), methods=["PUT"]),
        Route(f"{prefix}/aliases/{{source:str}}", api(_alias_remove), methods=["DELETE"]),
    ]
