"""The HTTP service (layer 4): the JSON API under /api/v1 and the console's login, in the
same process and event loop as SMTP.

What it promises:

- It never slows SMTP: every read of the queue index, the trace or the account store
  runs in a thread (``asyncio.to_thread``); listings are paginated; the live event stream
  gives each client a bounded buffer of its own and drops that client's oldest events
  rather than wait for it.
- Nobody reads without credentials: a console session (a login form with a CSRF token,
  then an HttpOnly, SameSite=Strict cookie, Secure under TLS) or an API token
  (``Authorization: Bearer``). The read-only role may only GET. Failed logins are slowed
  (``auth.failure_delay``) and then banned per IP as SMTP AUTH is (``policy.AuthLimiter``).
- Queue changes go through the same functions as ``hato queue`` (``spool`` administration),
  account changes through ``accounts.AccountAdmin``, as ``hato domain`` and ``hato user``
  make them (the same refusals, and the same warnings, in the JSON).
- The live event stream numbers its events and keeps the most recent: a client that
  reconnects with ``Last-Event-ID`` gets what it missed, or is told how much is gone.
- Every error is JSON ``{"error": "..."}`` with a fitting status, bad input a 4xx; an
  unexpected failure is a 500 with an ``internal_error`` event, never a traceback.
"""

from hato.web._app import SESSION_COOKIE, WebContext, build_app
from hato.web._events import EventHub, event_record
from hato.web._service import WebService, beyond_loopback
from hato.web._users import (
    ADMIN,
    READ_ONLY,
    WEB_FILE,
    Principal,
    TokenInfo,
    WebUserError,
    WebUsers,
)

__all__ = [
    "ADMIN",
    "READ_ONLY",
    "SESSION_COOKIE",
    "WEB_FILE",
    "EventHub",
    "Principal",
    "TokenInfo",
    "WebContext",
    "WebService",
    "WebUserError",
    "WebUsers",
    "beyond_loopback",
    "build_app",
    "event_record",
]
