"""The Starlette application: login, sessions, access control and the JSON API (/api/v1).

Access: ``Authorization: Bearer TOKEN`` (``hato web token add``) or the console's session
cookie. Admins may do anything; the read-only role (and read-only tokens) may only read
(GET). A request with a session cookie that changes something must carry the session's
CSRF token in ``X-CSRF-Token`` (forms: a ``csrf`` field). Every error is JSON
``{"error": "..."}`` with its status; nothing here answers with a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from json import JSONDecodeError
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from hato.accounts import (
    AccountError,
    AccountStore,
    InvalidInput,
    normalize_domain,
)
from hato.config import Settings
from hato.events import EventLog, InternalError
from hato.policy import AuthLimiter
from hato.routing import LocalRouter
from hato.spool import (
    QueueFilter,
    QueueState,
    SpoolError,
    delete_messages,
    entry_state,
    flush_messages,
    header_section,
    is_queue_id,
    list_entries,
    set_held,
)
from hato.trace import TRACE_FILE, TraceStore, TraceVersionError
from hato.web._activity import DAY_MINUTES, Activity
from hato.web._events import EventHub
from hato.web._openapi import openapi_document
from hato.web._users import Principal, WebUsers

__all__ = ["SESSION_COOKIE", "WebContext", "build_app"]

SESSION_COOKIE = "hato_session"
LOGIN_CSRF_COOKIE = "hato_login_csrf"
CSRF_HEADER = "x-csrf-token"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_BODY = 64 * 1024
READ_METHODS = frozenset({"GET", "HEAD"})
# Sessions kept in memory at most (the oldest go first): a flood of logins cannot grow it.
MAX_SESSIONS = 10_000
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

# (domain, local part, quota) -> bytes the mailbox holds.
MailboxUsage = Callable[[str, str, int | None], int]


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(slots=True)
class _Session:
    name: str
    role: str
    csrf: str
    expires: float


class Sessions:
    """Console logins, in memory: a restart logs everyone out, which is no loss."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._sessions: dict[str, _Session] = {}

    def create(self, principal: Principal) -> tuple[str, _Session]:
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        key = secrets.token_urlsafe(32)
        session = _Session(
            principal.name, principal.role, secrets.token_urlsafe(24), time.time() + self.lifetime
        )
        self._sessions[key] = session
        return key, session

    def get(self, key: str | None) -> _Session | None:
        if not key:
            return None
        session = self._sessions.get(key)
        if session is None:
            return None
        now = time.time()
        if session.expires < now:
            del self._sessions[key]
            return None
        session.expires = now + self.lifetime
        return session

    def end(self, key: str | None) -> None:
        if key:
            self._sessions.pop(key, None)


@dataclass(slots=True, kw_only=True)
class WebContext:
    """What the application reads and changes, all built in ``app.py``."""

    settings: Settings
    accounts: AccountStore
    users: WebUsers
    hub: EventHub
    log: EventLog
    usage: MailboxUsage
    # The router, for the warnings of account changes (an alias that hides a new mailbox).
    router: LocalRouter | None = None
    secure_cookies: bool = False
    # The Prometheus endpoint, served at /metrics without authentication (metrics.enabled).
    metrics: ASGIApp | None = None
    sessions: Sessions = field(init=False)
    limiter: AuthLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.settings.web.session_lifetime)
        auth = self.settings.auth
        self.limiter = AuthLimiter(
            max_failures=auth.max_failures, window=auth.failure_window, ban_time=auth.ban_time
        )

    @property
    def data_dir(self) -> Path:
        return self.settings.server.data_dir


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


Handler = Callable[[Request, WebContext], Awaitable[Response]]


def build_app(context: WebContext) -> Starlette:
    def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                _authorize(request, context)
                return await handler(request, context)
            except ApiError as error:
                return _error(error.status, error.message, error.headers)
            except InvalidInput as error:
                return _error(400, str(error))
            except AccountError as error:
                return _error(409, str(error))
            except SpoolError as error:
                return _error(503, f"the queue cannot be read now: {error}")

        return endpoint

    def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request, context)
            except ApiError as error:
                return _error(error.status, error.message, error.headers)

        return endpoint

    # Imported here: the console's pages use this module's sessions and errors.
    from hato.web._console import console_routes

    # The dashboard's counts: live from here on, the day before rebuilt from the event log.
    activity = Activity()
    context.log.subscribe(activity.event)
    activity.load_history_in_thread(context.settings.log.events_file)

    async def activity_endpoint(request: Request, context: WebContext) -> Response:
        return await _activity(request, activity)

    routes: list[BaseRoute] = [
        *console_routes(context, activity),
        Route("/login", page(_login_form), methods=["GET"]),
        Route("/login", page(_login), methods=["POST"]),
        Route("/logout", page(_logout), methods=["POST"]),
        Route("/api/v1/openapi.json", page(_openapi), methods=["GET"]),
        Route("/api/v1/whoami", api(_whoami), methods=["GET"]),
        Route("/api/v1/queue", api(_queue_list), methods=["GET"]),
        Route("/api/v1/queue/{action:str}", api(_queue_bulk), methods=["POST"]),
        Route("/api/v1/queue/{queue_id:str}", api(_queue_show), methods=["GET"]),
        Route("/api/v1/queue/{queue_id:str}", api(_queue_delete_one), methods=["DELETE"]),
        Route("/api/v1/queue/{queue_id:str}/{action:str}", api(_queue_one), methods=["POST"]),
        Route("/api/v1/messages/{what:str}/story", api(_story), methods=["GET"]),
        Route("/api/v1/messages/{queue_id:str}/header", api(_header), methods=["GET"]),
        Route("/api/v1/events", api(_events), methods=["GET"]),
        Route("/api/v1/activity", api(activity_endpoint), methods=["GET"]),
        Route("/api/v1/refusals", api(_refusals), methods=["GET"]),
    ]
    # DNS records, diagnostics and test addresses (hato test's engine); that module
    # imports this one, so it is imported here.
    from hato.web._api_accounts import account_routes
    from hato.web._api_more import more_routes

    routes += account_routes(api)
    routes += more_routes(api)
    if context.metrics is not None:
        routes.append(Mount("/metrics", app=context.metrics))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such resource", 405: "method not allowed here"}.get(
            exc.status_code, str(exc.detail)
        )
        return _error(exc.status_code, f"{message}: {request.method} {request.url.path}")

    async def internal_error(request: Request, exc: Exception) -> Response:
        context.log.emit(InternalError(where=f"web {request.url.path}", error=repr(exc)))
        return _error(500, "internal error; the event log has the details")

    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


# -- access ---------------------------------------------------------------------------------


def _authorize(request: Request, context: WebContext) -> Principal:
    header = request.headers.get("authorization")
    principal: Principal | None = None
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "use Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"})
        principal = context.users.check_token(token.strip())
        if principal is None:
            raise ApiError(401, "unknown token", {"WWW-Authenticate": "Bearer"})
    else:
        session = context.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise ApiError(
                401,
                "log in at /login, or send Authorization: Bearer TOKEN",
                {"WWW-Authenticate": "Bearer"},
            )
        if request.method not in READ_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise ApiError(403, f"missing or wrong CSRF token ({CSRF_HEADER} header)")
        principal = Principal(name=session.name, role=session.role, via="session")
    if request.method not in READ_METHODS and not principal.may_write:
        raise ApiError(403, f"{principal.name} is {principal.role}: it may only read")
    request.state.principal = principal
    return principal


def _client_ip(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


# -- console pages ---------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hato: {title}</title></head>
<body><main>{body}</main></body></html>
"""


def _html(title: str, body: str, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)
    response.headers["Content-Security-Policy"] = "default-src 'none'; form-action 'self'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    return response


def _cookie(context: WebContext, response: Response, name: str, value: str, age: float) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(age),
        httponly=True,
        samesite="strict",
        secure=context.secure_cookies,
        path="/",
    )


def _forget(context: WebContext, response: Response, name: str) -> None:
    """Ends a cookie with the same attributes it was set with (Secure under TLS)."""
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=context.secure_cookies
    )


def _login_page(context: WebContext, message: str = "", status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    body = (
        f"<h1>Log in to Hato on {html.escape(context.settings.server.hostname)}</h1>{note}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{token}">'
        '<label>User <input name="username" autocomplete="username" required></label> '
        '<label>Password <input name="password" type="password"'
        ' autocomplete="current-password" required></label> '
        '<button type="submit">Log in</button></form>'
    )
    response = _html("log in", body, status)
    _cookie(context, response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def _login_form(request: Request, context: WebContext) -> Response:
    return _login_page(context)


async def _form(request: Request) -> dict[str, str]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise ApiError(413, "the form is too large")
    try:
        form = await request.form(max_files=0, max_fields=20)
    except Exception:  # malformed multipart or urlencoded data
        raise ApiError(400, "the form cannot be read") from None
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _login(request: Request, context: WebContext) -> Response:
    ip = _client_ip(request)
    limiter = context.limiter
    if limiter.banned(ip):
        retry = str(int(limiter.ban_time))
        raise ApiError(429, "too many failed logins from your address", {"Retry-After": retry})
    form = await _form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(403, "missing or wrong CSRF token: reload the login page")
    name, password = form.get("username", ""), form.get("password", "")
    principal = await asyncio.to_thread(context.users.check_password, name, password)
    if principal is None:
        if limiter.failed(ip):
            retry = str(int(limiter.ban_time))
            raise ApiError(429, "too many failed logins from your address", {"Retry-After": retry})
        await asyncio.sleep(context.settings.auth.failure_delay)
        return _login_page(context, "Wrong user name or password.", 401)
    key, _ = context.sessions.create(principal)
    response = RedirectResponse("/", status_code=303)
    _cookie(context, response, SESSION_COOKIE, key, context.sessions.lifetime)
    _forget(context, response, LOGIN_CSRF_COOKIE)
    return response


async def _logout(request: Request, context: WebContext) -> Response:
    key = request.cookies.get(SESSION_COOKIE)
    session = context.sessions.get(key)
    if session is not None:
        form = await _form(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf.encode()):
            raise ApiError(403, "missing or wrong CSRF token")
        context.sessions.end(key)
    response = RedirectResponse("/login", status_code=303)
    _forget(context, response, SESSION_COOKIE)
    return response


async def _openapi(request: Request, context: WebContext) -> Response:
    return JSONResponse(openapi_document())


async def _whoami(request: Request, context: WebContext) -> Response:
    principal: Principal = request.state.principal
    body: dict[str, Any] = {"name": principal.name, "role": principal.role, "via": principal.via}
    if principal.via == "session":
        session = context.sessions.get(request.cookies.get(SESSION_COOKIE))
        body["csrf"] = session.csrf if session is not None else None
    return JSONResponse(body)


# -- input ------------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, *, maximum: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > maximum:
        raise ApiError(400, f"{name} must be a whole number from 0 to {maximum}, not {text!r}")
    return int(text)


def _duration(name: str, text: str) -> float:
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ApiError(400, f"{name} is a duration such as 3600, 30m, 2h or 7d, not {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _queue_id(text: str) -> str:
    if not is_queue_id(text):
        raise ApiError(400, f"not a queue ID: {text!r}")
    return text


async def _json_body(request: Request) -> dict[str, Any]:
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise ApiError(413, "the request body is too large")
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _strings(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key} must be an array of strings")
    return list(value)


async def _in_queue(context: WebContext, work: Callable[[QueueState], Any]) -> Any:
    """Run ``work`` on a fresh QueueState in a thread: the index is never read on the loop."""

    def run() -> Any:
        with QueueState(context.data_dir) as state:
            return work(state)

    return await asyncio.to_thread(run)


def _entry_dict(entry: Any) -> dict[str, Any]:
    return {**entry.to_dict(), "state": entry_state(entry)}


# -- queue ------------------------------------------------------------------------------------


async def _queue_list(request: Request, context: WebContext) -> Response:
    params = request.query_params
    age = params.get("age") or params.get("min_age")
    try:
        wanted = QueueFilter(
            sender=params.get("sender") or None,
            recipient=params.get("recipient") or None,
            destination=params.get("destination") or None,
            state=params.get("state") or None,
            min_age=_duration("age", age) if age else None,
        )
    except ValueError as error:
        raise ApiError(400, str(error)) from None
    limit = _int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
    offset = _int_param(request, "offset", 0, maximum=10**9)
    entries, total = await _in_queue(
        context, lambda state: list_entries(state, wanted, limit=limit, offset=offset)
    )
    body = {
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < total else None,
        "messages": [_entry_dict(e) for e in entries],
    }
    return JSONResponse(body)


async def _queue_show(request: Request, context: WebContext) -> Response:
    queue_id = _queue_id(request.path_params["queue_id"])
    entry = await _in_queue(context, lambda state: state.entry(queue_id))
    if entry is None:
        raise ApiError(404, f"{queue_id}: no such message in the queue")
    return JSONResponse(_entry_dict(entry))


def _apply(state: QueueState, action: str, ids: list[str] | None, destination: str | None) -> Any:
    if action == "hold":
        return asdict(set_held(state, ids, True))
    if action == "release":
        return asdict(set_held(state, ids, False))
    if action == "flush":
        return asdict(flush_messages(state, ids, destination=destination))
    return asdict(delete_messages(state, ids))


_ACTIONS = ("hold", "release", "flush", "delete")


async def _queue_one(request: Request, context: WebContext) -> Response:
    queue_id = _queue_id(request.path_params["queue_id"])
    action = request.path_params["action"]
    if action not in _ACTIONS[:3]:
        raise ApiError(404, f"no action {action!r}; use hold, release or flush (DELETE deletes)")
    result = await _in_queue(context, lambda state: _apply(state, action, [queue_id], None))
    if result.get("missing"):
        raise ApiError(404, f"{queue_id}: no such message in the queue")
    return JSONResponse({"action": action, **result})


async def _queue_delete_one(request: Request, context: WebContext) -> Response:
    queue_id = _queue_id(request.path_params["queue_id"])
    result = await _in_queue(context, lambda state: _apply(state, "delete", [queue_id], None))
    if result.get("missing"):
        raise ApiError(404, f"{queue_id}: no such message in the queue")
    return JSONResponse({"action": "delete", **result})


async def _queue_bulk(request: Request, context: WebContext) -> Response:
    """``{"queue_ids": [...]}``, ``{"all": true}`` or, to flush, ``{"destination": D}``."""
    action = request.path_params["action"]
    if action not in _ACTIONS:
        raise ApiError(404, f"no queue action {action!r}; use one of {', '.join(_ACTIONS)}")
    body = await _json_body(request)
    ids = _strings(body, "queue_ids")
    every = body.get("all", False)
    destination = body.get("destination")
    if not isinstance(every, bool):
        raise ApiError(400, "all must be true or false")
    if destination is not None and (not isinstance(destination, str) or action != "flush"):
        raise ApiError(400, "destination is a domain, and only for flush")
    chosen = sum([ids is not None, every, destination is not None])
    if chosen != 1:
        raise ApiError(400, "give exactly one of queue_ids, all: true or (flush) destination")
    for queue_id in ids or ():
        _queue_id(queue_id)
    if destination is not None:
        try:
            destination = normalize_domain(destination)
        except InvalidInput as error:
            raise ApiError(400, f"destination: {error}") from None
    targets = None if every else ids
    result = await _in_queue(context, lambda state: _apply(state, action, targets, destination))
    return JSONResponse({"action": action, **result})


# -- messages ---------------------------------------------------------------------------------


async def _header(request: Request, context: WebContext) -> Response:
    queue_id = _queue_id(request.path_params["queue_id"])

    def read(state: QueueState) -> bytes | None:
        if state.entry(queue_id) is None:
            return None
        return header_section(state, queue_id)

    try:
        header = await _in_queue(context, read)
    except OSError as error:
        raise ApiError(404, f"{queue_id}: cannot read the message: {error}") from None
    if header is None:
        raise ApiError(404, f"{queue_id}: no such message in the queue")
    text = header.decode("utf-8", errors="replace")
    return JSONResponse({"queue_id": queue_id, "header": text})


def _trace_store(context: WebContext) -> TraceStore:
    path = context.data_dir / TRACE_FILE
    if not path.exists():
        raise ApiError(404, "no trace recorded yet (trace.enabled)")
    try:
        return TraceStore(path, readonly=True)
    except TraceVersionError as error:
        raise ApiError(503, str(error)) from None


async def _story(request: Request, context: WebContext) -> Response:
    what = request.path_params["what"]
    if not what or len(what) > 1000:
        raise ApiError(400, "give a queue ID or a Message-ID")

    def read() -> list[dict[str, Any]]:
        with _trace_store(context) as store:
            story = store.story(what)
            if story is not None:
                return [story]
            found = store.find(message_id=what)
            return [s for f in found if (s := store.story(f.queue_id)) is not None]

    stories = await asyncio.to_thread(read)
    if not stories:
        raise ApiError(404, f"nothing recorded about {what}")
    return JSONResponse(stories[0] if len(stories) == 1 else {"stories": stories})


# -- activity ---------------------------------------------------------------------------------


async def _events(request: Request, context: WebContext) -> Response:
    """Live events; with ``Last-Event-ID`` (a reconnect) first the ones missed meanwhile."""
    text = request.headers.get("last-event-id", "").strip()
    if text and not (text.isascii() and text.isdigit() and len(text) < 30):
        raise ApiError(400, f"Last-Event-ID is the id: of an event this stream sent, not {text!r}")
    stream = context.hub.stream(last_event_id=int(text) if text else None)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _activity(request: Request, activity: Activity) -> Response:
    """The dashboard's figures: per-minute counts over the last ``minutes`` (60)."""
    minutes = _int_param(request, "minutes", 60, maximum=DAY_MINUTES)
    if minutes == 0:
        raise ApiError(400, f"minutes must be from 1 to {DAY_MINUTES}")
    window = activity.window(minutes)
    body = {
        "minutes": minutes,
        "first": window.first,
        "since": activity.since,
        "history": activity.history,
        "totals": {name: window.total(name) for name in window.series},
        "series": window.series,
        "connections": window.connections,
        "tls_sessions": window.tls_sessions,
        "refusals": [{"reason": reason, "count": count} for reason, count in window.refusals],
    }
    return JSONResponse(body)


async def _refusals(request: Request, context: WebContext) -> Response:
    since_text = request.query_params.get("since", "1h")
    since = time.time() - _duration("since", since_text)
    limit = _int_param(request, "limit", 100, maximum=1000)

    def read() -> list[dict[str, Any]]:
        with _trace_store(context) as store:
            return [r.to_dict() for r in store.refusals(since=since, limit=limit)]

    return JSONResponse({"refusals": await asyncio.to_thread(read)})
