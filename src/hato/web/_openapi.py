"""The OpenAPI 3.1 document of /api/v1, written out by hand so it says what a person needs."""

from __future__ import annotations

from typing import Any

from hato import __version__
from hato.spool import QUEUE_STATES

__all__ = ["openapi_document"]

_ERROR = {
    "description": 'An error: `{"error": "what is wrong and what to do"}`',
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_QUEUE_ID = {"name": "queue_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, doc: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": doc, "schema": {"type": kind, **extra}}


def _op(
    summary: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    write: bool = False,
    content: str = "application/json",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary + (" (admin)" if write else ""),
        "responses": {
            "200": {"description": "Done", "content": {content: {}}},
            "400": _ERROR,
            "401": _ERROR,
            **({"403": _ERROR} if write else {}),
            "404": _ERROR,
        },
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "properties": body}}},
        }
    return op


_IDS = {
    "queue_ids": {"type": "array", "items": {"type": "string"}},
    "all": {"type": "boolean", "description": "Every queued message."},
}


def _diagnostics_op() -> dict[str, Any]:
    flag = {"type": "boolean"}
    op = _op(
        "Run hato test against a target from this server: server-sent events, `start`, one"
        " `step` per step taken (host, address, port, name, status, started, duration,"
        " detail), then `report` (the report as hato test --json gives it) or `error`."
        " At most a few runs at once (429 beyond)",
        body={
            "target": {"type": "string", "description": "Address, domain, host or HOST:PORT"},
            "server": {"type": "string", "description": "HOST[:PORT]: skip the MX lookup"},
            "all_mx": flag,
            "from": {"type": "string"},
            "to": {"type": "string"},
            "tls": {"enum": ["try", "off", "require"]},
            "auth_user": {"type": "string"},
            "auth_password": {"type": "string"},
            "dsn": flag,
            "send": flag,
            "relay_test": flag,
            "timeout": {"type": "number", "description": "Seconds per step (30, at most 120)"},
        },
        write=True,
        content="text/event-stream",
    )
    op["responses"]["429"] = _ERROR
    return op


def _change(summary: str, **kwargs: Any) -> dict[str, Any]:
    """An account change: done and warnings as hato would print them; 409 when refused."""
    op = _op(summary + ". Answers with `done` and `warnings` (what hato prints)", **kwargs)
    op["responses"]["409"] = _ERROR
    return op


_QUOTA = {
    "type": ["integer", "string", "null"],
    "description": "Bytes, or a size such as 500M or 2G (binary multiples); null: none",
}
_PASSWORD = {
    "type": ["string", "null"],
    "description": "null: none (the user receives mail but cannot log in)",
}


def _account_paths() -> dict[str, Any]:
    address = [{"name": "address", "in": "path", "required": True}]
    return {
        "/api/v1/accounts/domains": {
            "get": _op("Local domains with their counts"),
            "post": _change(
                "Make a domain local, as hato domain add, with its DKIM key (`dkim`: the"
                " selector, the record to publish) unless dkim is false (201)",
                body={
                    "domain": {"type": "string"},
                    "dkim": {"type": "boolean", "description": "Make an RSA key (true)"},
                    "ed25519": {"type": "boolean", "description": "And an ed25519 key (false)"},
                },
                write=True,
            ),
        },
        "/api/v1/accounts/domains/{domain}": {
            "delete": _change(
                "Remove a local domain from the store; refused while it has users or aliases"
                " unless force=true, which removes them with it",
                params=[
                    {"name": "domain", "in": "path", "required": True},
                    _query("force", "Remove its users and aliases too", "boolean"),
                ],
                write=True,
            )
        },
        "/api/v1/accounts/users": {
            "get": _op(
                "Users with quota and usage (bytes)",
                params=[_query("domain", "Only this domain's")],
            ),
            "post": _change(
                "Add a user (mailbox), as hato user add (201)",
                body={"address": {"type": "string"}, "password": _PASSWORD, "quota": _QUOTA},
                write=True,
            ),
        },
        "/api/v1/accounts/users/{address}": {
            "put": _change(
                "Change a user's password and/or quota (null removes either)",
                params=address,
                body={"password": _PASSWORD, "quota": _QUOTA},
                write=True,
            ),
            "delete": _change(
                "Remove a user (its delivered mail stays on disk)", params=address, write=True
            ),
        },
    }


def openapi_document() -> dict[str, Any]:
    one = [_QUEUE_ID]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hato",
            "version": __version__,
            "description": "The mail server's queue, messages, accounts and activity."
            " Authenticate with `Authorization: Bearer TOKEN` (hato web token add NAME"
            " [--read-only]) or a console session (then send X-CSRF-Token on changes)."
            " Read-only tokens may only GET.",
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/whoami": {"get": _op("Who the credentials belong to, and their role")},
            "/api/v1/queue": {
                "get": _op(
                    "Queued messages, oldest first, a page at a time",
                    params=[
                        _query("sender", "Sender contains this text"),
                        _query("recipient", "A recipient contains this text"),
                        _query("destination", "A pending recipient is in this domain"),
                        _query("state", "held, deferred or queued", enum=list(QUEUE_STATES)),
                        _query("age", "Arrived at least this long ago (3600, 30m, 2h, 7d)"),
                        _query("limit", "At most this many (1-500, 50)", "integer"),
                        _query(
                            "offset", "Skip this many (next_offset of the last page)", "integer"
                        ),
                    ],
                )
            },
            "/api/v1/queue/{action}": {
                "post": _op(
                    "hold, release, flush or delete several messages",
                    params=[
                        {
                            "name": "action",
                            "in": "path",
                            "required": True,
                            "schema": {"enum": ["hold", "release", "flush", "delete"]},
                        }
                    ],
                    body={**_IDS, "destination": {"type": "string", "description": "flush"}},
                    write=True,
                )
            },
            "/api/v1/queue/{queue_id}": {
                "get": _op("One message's envelope and recipients' state", params=one),
                "delete": _op("Remove a message without delivering it", params=one, write=True),
            },
            "/api/v1/queue/{queue_id}/hold": {
                "post": _op("Keep a message queued without attempts", params=one, write=True)
            },
            "/api/v1/queue/{queue_id}/release": {
                "post": _op("Release a held message", params=one, write=True)
            },
            "/api/v1/queue/{queue_id}/flush": {
                "post": _op("Attempt a message now", params=one, write=True)
            },
            "/api/v1/messages/{queue_id}/header": {
                "get": _op("A queued message's header section, as text", params=one)
            },
            "/api/v1/messages/{what}/story": {
                "get": _op(
                    "Everything recorded about a message (as hato trace), by queue ID or"
                    " Message-ID",
                    params=[{"name": "what", "in": "path", "required": True}],
                )
            },
            "/api/v1/events": {
                "get": _op(
                    "Live events as server-sent events (id: a number, event: NAME, data: the"
                    " JSON record). Reconnecting with the Last-Event-ID header first replays"
                    " the events missed meanwhile from the recent ones kept in memory, after a"
                    " `missed` event (missed: how many are gone, or null) when they no longer"
                    " reach back that far",
                    params=[
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "description": "The id of the last event received",
                            "schema": {"type": "string"},
                        }
                    ],
                    content="text/event-stream",
                )
            },
            "/api/v1/activity": {
                "get": _op(
                    "The dashboard's figures: messages received and recipients delivered,"
                    " deferred and bounced per minute (series, oldest first, and totals),"
                    " connections, TLS sessions and the top refusals; the day before a start"
                    " is rebuilt from the event log (since: the earliest moment counted)",
                    params=[_query("minutes", "The window (60, at most 1440)", "integer")],
                )
            },
            "/api/v1/refusals": {
                "get": _op(
                    "Recent refusals with their rules",
                    params=[
                        _query("since", "How far back (1h)"),
                        _query("limit", "At most this many (100)", "integer"),
                    ],
                )
            },
            "/api/v1/dns": {"get": _op("Local domains, each with the URL of its DNS records")},
            "/api/v1/dns/{domain}": {
                "get": _op(
                    "The records a local domain should publish (MX, SPF, DKIM, DMARC; MTA-STS"
                    " and TLS-RPT once published), each with its status in DNS now"
                    " (ok, missing, differs, warn, fail, unknown), and the checks of"
                    " hato test DOMAIN --dns",
                    params=[{"name": "domain", "in": "path", "required": True}],
                )
            },
            "/api/v1/diagnostics": {
                "post": _diagnostics_op(),
            },
            "/api/v1/probes": {
                "post": _op(
                    "Make a test address for an hour, as hato test --receive: mail sent to it"
                    " is analysed, never delivered (201)",
                    body={"domain": {"type": "string", "description": "A local domain"}},
                    write=True,
                )
            },
            "/api/v1/probes/{address}": {
                "get": _op(
                    "A test address: state waiting, received or expired, and the analysis of"
                    " each message that arrived",
                    params=[{"name": "address", "in": "path", "required": True}],
                )
            },
            **_account_paths(),
            "/api/v1/accounts/aliases": {
                "get": _op("Aliases and their targets"),
                "post": _op(
                    "Add an alias, or targets to one",
                    body={
                        "source": {"type": "string"},
                        "targets": {"type": "array", "items": {"type": "string"}},
                    },
                    write=True,
                ),
            },
            "/api/v1/accounts/aliases/{source}": {
                "put": _op(
                    "Replace an alias's targets",
                    params=[{"name": "source", "in": "path", "required": True}],
                    body={"targets": {"type": "array", "items": {"type": "string"}}},
                    write=True,
                ),
                "delete": _op(
                    "Remove an alias, or one target (?target=)",
                    params=[
                        {"name": "source", "in": "path", "required": True},
                        _query("target", "Only this target"),
                    ],
                    write=True,
                ),
            },
        },
    }
