"""The console: server-rendered pages (Jinja2) over the same data and operations as the API.

Every page needs a login (the session cookie of ``/login``); without one it redirects
there. Read-only users see the same pages without the action buttons, and a form they
post anyway is refused (403). Every form carries the session's CSRF token.

The dashboard's rates are counted in memory (``_activity.Activity``, one more subscriber
of the event log: an increment per event under a lock), the day before the start rebuilt
from the event log's tail in a thread, so a restart keeps the day. The outbound
TLS share comes from the flight recorder's attempts, the queue figures from the queue
index; both are read in a thread, like every other store read here.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hato.config import settings_to_toml
from hato.delivery import EXPLANATIONS, destinations
from hato.diag import ProbeError, split_probe
from hato.events import (
    OpsEvent,
    printable,
)
from hato.spool import (
    QUEUE_STATES,
    QueueEntry,
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
from hato.web._activity import (
    DAY_MINUTES,
    SERIES,
    Activity,
    Window,
)
from hato.web._api_more import (
    DEFAULT_TIMEOUT,
    MAX_TIMEOUT,
    _dns_view,
    _local_domains,
    _probe_domain,
    _probe_store,
    _probe_view,
)
from hato.web._app import SESSION_COOKIE, ApiError, WebContext, _duration
from hato.web._users import ADMIN

__all__ = ["Activity", "console_routes"]

HERE = Path(__file__).parent
PAGE_SIZE = 50
SORTS = ("arrival", "sender", "size", "state", "due")
HOUR_MINUTES = 60
# The events page starts with the tail of the event log: this many bytes of it at most.
EVENTS_TAIL_BYTES = 256 * 1024
EVENTS_TAIL_LINES = 100
# Form fields accepted at once: the queue page's checkboxes of one page, and a few more.
MAX_FORM_FIELDS = PAGE_SIZE * 10 + 10
# Where a form may send the browser back to: a console page, never another site.
_BACK = re.compile(r"/(?:queue|destinations|messages/[A-Za-z0-9._@<>%+-]+)(?:\?[^\s#]*)?")
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# -- the plot ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plot:
    """A window's series as SVG polylines (drawn by the template): per-minute counts."""

    width: int
    height: int
    peak: int
    lines: list[tuple[str, str]]  # (series name, "x,y x,y ...")
    ticks: list[tuple[float, str]]  # (x, label) along the time axis


def plot(window: Window, *, width: int = 560, height: int = 120) -> Plot:
    peak = max([1, *(max(v) for v in window.series.values() if v)])
    count = window.minutes
    step = width / max(1, count - 1)
    lines = []
    for name in SERIES:
        values = window.series[name]
        # A point between two equal neighbours adds nothing to the line: a quiet day of
        # 1440 minutes draws as a few points, not thousands.
        points = " ".join(
            f"{i * step:.1f},{height - value / peak * (height - 4) - 2:.1f}"
            for i, value in enumerate(values)
            if i in (0, len(values) - 1) or not values[i - 1] == value == values[i + 1]
        )
        lines.append((name, points))
    every = 10 if count <= HOUR_MINUTES else 180
    ticks = []
    for i in range(count):
        moment = window.first + i * 60
        if int(moment // 60) % every == 0:
            ticks.append((i * step, time.strftime("%H:%M", time.localtime(moment))))
    return Plot(width=width, height=height, peak=peak, lines=lines, ticks=ticks)


# -- rendering ----------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _clock(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1000):03d}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _size(count: float) -> str:
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            break
    return f"{count:.1f} {unit}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Network text (EHLO names, replies, addresses) may hold controls: shown as escapes.
    env.filters["printable"] = lambda text: printable(str(text), lines=True)
    env.filters["age"] = _age
    env.filters["when"] = _when
    env.filters["clock"] = _clock
    env.filters["percent"] = _percent
    env.filters["size"] = _size
    env.globals["now"] = time.time
    return env


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    role: str
    csrf: str

    @property
    def may_write(self) -> bool:
        return self.role == ADMIN


class Console:
    def __init__(self, context: WebContext, activity: Activity) -> None:
        self.context = context
        self.activity = activity
        self.env = _environment()
        self._tls_out: tuple[float, dict[int, tuple[int, int]]] = (0.0, {})

    # -- plumbing --------------------------------------------------------------------------

    def viewer(self, request: Request) -> Viewer | None:
        session = self.context.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        return Viewer(session.name, session.role, session.csrf)

    def render(
        self, name: str, viewer: Viewer, page: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        text = self.env.get_template(name).render(
            viewer=viewer,
            page=page,
            hostname=self.context.settings.server.hostname,
            **values,
        )
        response = HTMLResponse(text, status_code=status)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    async def in_queue(self, work: Callable[[QueueState], Any]) -> Any:
        def run() -> Any:
            with QueueState(self.context.data_dir) as state:
                return work(state)

        return await asyncio.to_thread(run)

    def trace(self) -> TraceStore | None:
        path = self.context.data_dir / TRACE_FILE
        if not path.exists():
            return None
        try:
            return TraceStore(path, readonly=True)
        except TraceVersionError:
            return None

    def tls_out(self, windows: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(attempts, over TLS) per window in minutes; read at most every 30 s (thread)."""
        read_at, cached = self._tls_out
        now = time.time()
        if now - read_at < 30 and all(w in cached for w in windows):
            return cached
        store = self.trace()
        found: dict[int, tuple[int, int]] = {}
        if store is not None:
            with store:
                for minutes in windows:
                    found[minutes] = store.attempt_tls(now - minutes * 60)
        self._tls_out = (now, found)
        return found


def _form_values(form: Any) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            values.setdefault(key, []).append(value)
    return values


async def _read_form(request: Request) -> dict[str, list[str]]:
    if int(request.headers.get("content-length") or 0) > 64 * 1024:
        raise ApiError(413, "the form is too large")
    try:
        form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    except Exception:  # malformed form data, or too many fields
        raise ApiError(400, "the form cannot be read") from None
    return _form_values(form)


def _first(values: dict[str, list[str]], key: str) -> str:
    found = values.get(key)
    return found[0] if found else ""


Page = Callable[[Request, Console, Viewer], Awaitable[Response]]


def console_routes(context: WebContext, activity: Activity) -> list[BaseRoute]:
    """The console's pages and its static files, for ``build_app``."""
    # Imported here: that module uses this one's Console and forms.
    from hato.web._console_accounts import account_pages

    console = Console(context, activity)

    def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer = console.viewer(request)
            if viewer is None:
                return RedirectResponse("/login", status_code=303)
            try:
                return await handler(request, console, viewer)
            except ApiError as error:
                return console.render("error.html", viewer, "", error.status, message=error.message)
            except SpoolError as error:
                message = f"the queue cannot be read now: {error}"
                return console.render("error.html", viewer, "", 503, message=message)

        return endpoint

    return [
        Route("/", page(_dashboard), methods=["GET"]),
        Route("/dashboard/live", page(_dashboard_live), methods=["GET"]),
        Route("/queue", page(_queue), methods=["GET"]),
        Route("/queue", page(_queue_action), methods=["POST"]),
        Route("/messages/{what:str}", page(_message), methods=["GET"]),
        Route("/destinations", page(_destinations), methods=["GET"]),
        Route("/events", page(_events), methods=["GET"]),
        *account_pages(page),
        Route("/configuration", page(_configuration), methods=["GET"]),
        Route("/test", page(_test), methods=["GET"]),
        Route("/dns", page(_dns), methods=["GET"]),
        Route("/test-address", page(_probe), methods=["GET"]),
        Route("/test-address", page(_probe_create), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]


# -- dashboard ------------------------------------------------------------------------------


async def _dashboard_values(console: Console) -> dict[str, Any]:
    hour = console.activity.window(HOUR_MINUTES)
    day = console.activity.window(DAY_MINUTES)

    def read() -> tuple[Any, dict[int, tuple[int, int]]]:
        with QueueState(console.context.data_dir) as state:
            summary = state.summary()
        return summary, console.tls_out((HOUR_MINUTES, DAY_MINUTES))

    summary, tls_out = await asyncio.to_thread(read)
    counts = {state: summary.messages.get(state, 0) for state in QUEUE_STATES}

    def share(minutes: int) -> float | None:
        attempts, over_tls = tls_out.get(minutes, (0, 0))
        return over_tls / attempts if attempts else None

    return {
        "hour": hour,
        "day": day,
        "hour_plot": plot(hour),
        "day_plot": plot(day),
        "series": SERIES,
        "queue_counts": counts,
        "queue_total": sum(counts.values()),
        "oldest": summary.oldest_arrival,
        "tls_out_hour": share(HOUR_MINUTES),
        "tls_out_day": share(DAY_MINUTES),
        "since": console.activity.since,
    }


async def _dashboard(request: Request, console: Console, viewer: Viewer) -> Response:
    values = await _dashboard_values(console)
    return console.render("dashboard.html", viewer, "dashboard", **values)


async def _dashboard_live(request: Request, console: Console, viewer: Viewer) -> Response:
    """The dashboard's figures alone, which its script swaps in as events arrive."""
    values = await _dashboard_values(console)
    return console.render("_dashboard_live.html", viewer, "dashboard", **values)


# -- queue ------------------------------------------------------------------------------------


def _sort_key(name: str) -> Callable[[QueueEntry], Any]:
    if name == "sender":
        return lambda e: e.envelope.reverse_path.lower()
    if name == "size":
        return lambda e: e.size
    if name == "state":
        return lambda e: (entry_state(e), e.envelope.arrival)
    if name == "due":
        return lambda e: e.due if e.due is not None else float("inf")
    return lambda e: e.envelope.arrival


def _last_reply(entry: QueueEntry) -> str:
    tried = [r for r in entry.recipients if r.last_attempt]
    if not tried:
        return ""
    latest = max(tried, key=lambda r: r.last_attempt or 0.0)
    return f"{latest.status or ''} {latest.detail or ''}".strip()


async def _queue(request: Request, console: Console, viewer: Viewer) -> Response:
    params = request.query_params
    filters = {k: params.get(k, "").strip() for k in ("sender", "recipient", "destination")}
    state_name = params.get("state", "")
    age = params.get("age", "").strip()
    sort = params.get("sort", "arrival")
    if sort not in SORTS:
        raise ApiError(400, f"sort by one of {', '.join(SORTS)}, not {sort!r}")
    descending = params.get("order") == "desc"
    offset_text = params.get("offset", "0")
    if not (offset_text.isascii() and offset_text.isdigit()):
        raise ApiError(400, f"offset must be a whole number, not {offset_text!r}")
    offset = int(offset_text)
    try:
        wanted = QueueFilter(
            sender=filters["sender"] or None,
            recipient=filters["recipient"] or None,
            destination=filters["destination"] or None,
            state=state_name or None,
            min_age=_duration("age", age) if age else None,
        )
    except ValueError as error:
        raise ApiError(400, str(error)) from None

    def read(state: QueueState) -> tuple[list[QueueEntry], int]:
        entries, total = list_entries(state, wanted)
        entries.sort(key=_sort_key(sort), reverse=descending)
        return entries[offset : offset + PAGE_SIZE], total

    entries, total = await console.in_queue(read)
    kept = {**filters, "state": state_name, "age": age}
    query = {k: v for k, v in kept.items() if v}

    def link(**changes: Any) -> str:
        merged = {**query, "sort": sort, "order": "desc" if descending else "asc", **changes}
        return "/queue?" + urlencode({k: v for k, v in merged.items() if v not in ("", None)})

    def sort_link(column: str) -> str:
        flip = column == sort and not descending
        return link(sort=column, order="desc" if flip else "asc", offset=None)

    rows = [
        {
            "entry": e,
            "state": entry_state(e),
            "reply": _last_reply(e),
        }
        for e in entries
    ]
    return console.render(
        "queue.html",
        viewer,
        "queue",
        rows=rows,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        filters=kept,
        states=QUEUE_STATES,
        sort=sort,
        descending=descending,
        sort_link=sort_link,
        prev_link=link(offset=max(0, offset - PAGE_SIZE)) if offset else None,
        next_link=link(offset=offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None,
        back=request.url.path + ("?" + request.url.query if request.url.query else ""),
        done=params.get("done", ""),
    )


_DONE = {"hold": "held", "release": "released", "delete": "deleted", "flush": "retried now"}


async def _queue_action(request: Request, console: Console, viewer: Viewer) -> Response:
    """Hold, release, delete or flush the messages ticked (``queue_id``), or flush one
    destination's: the same functions as ``hato queue`` and the API."""
    values = await _read_form(request)
    if not hmac.compare_digest(_first(values, "csrf").encode(), viewer.csrf.encode()):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")
    if not viewer.may_write:
        raise ApiError(403, f"{viewer.name} is {viewer.role}: it may only read")
    action = _first(values, "action")
    if action not in _DONE:
        raise ApiError(400, f"no queue action {action!r}; use hold, release, delete or flush")
    ids = values.get("queue_id", [])
    for queue_id in ids:
        if not is_queue_id(queue_id):
            raise ApiError(400, f"not a queue ID: {queue_id!r}")
    destination = _first(values, "destination") or None
    if not ids and destination is None:
        raise ApiError(400, "tick at least one message first")

    def apply(state: QueueState) -> str:
        if action in ("hold", "release"):
            held = set_held(state, ids, action == "hold")
            return f"{len(held.changed)} {_DONE[action]}, {len(held.unchanged)} unchanged"
        if action == "delete":
            return f"{delete_messages(state, ids).removed} deleted"
        flushed = flush_messages(state, ids or None, destination=destination)
        return f"{flushed.scheduled} recipients {_DONE[action]}"

    done = await console.in_queue(apply)
    back = _first(values, "back")
    if not _BACK.fullmatch(back):
        back = "/queue"
    path, _, query = back.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query) if k != "done"]
    target = path + "?" + urlencode([*kept, ("done", done)])
    return RedirectResponse(target, status_code=303)


# -- one message ------------------------------------------------------------------------------


def _session_items(step: dict[str, Any]) -> list[dict[str, Any]]:
    """A session's transcript with its events placed after the lines they answered."""
    events = list(step["events"])
    items: list[dict[str, Any]] = []
    lines = step["transcript"]
    for index, line in enumerate(lines):
        items.append({"ts": line["ts"], "direction": line["direction"], "text": line["text"]})
        if index + 1 < len(lines) and lines[index + 1]["ts"] == line["ts"]:
            continue
        while events and events[0]["ts"] <= line["ts"]:
            items.append(_session_event(events.pop(0)))
    items += [_session_event(event) for event in events]
    return items


def _session_event(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    if event["event"] == "reject":
        text = f"refused {data.get('command') or 'a command'}: {data.get('reason')}"
        if data.get("rule"):
            text += f" (rule {data['rule']})"
    else:
        text = event["text"].removeprefix(f"session={data.get('session')} ")
    return {"ts": event["ts"], "direction": "*", "text": text}


async def _message(request: Request, console: Console, viewer: Viewer) -> Response:
    what = request.path_params["what"]
    if not what or len(what) > 1000:
        raise ApiError(400, "give a queue ID or a Message-ID")

    def read() -> tuple[dict[str, Any] | None, QueueEntry | None, str | None]:
        story = None
        store = console.trace()
        if store is not None:
            with store:
                story = store.story(what)
                if story is None:
                    found = store.find(message_id=what)
                    if found:
                        story = store.story(found[-1].queue_id)
        queue_id = story["queue_id"] if story is not None else what
        entry, header = None, None
        if is_queue_id(queue_id):
            with QueueState(console.context.data_dir) as state:
                entry = state.entry(queue_id)
                if entry is not None:
                    try:
                        header = header_section(state, queue_id).decode("utf-8", "replace")
                    except OSError:
                        header = None
        return story, entry, header

    story, entry, header = await asyncio.to_thread(read)
    if story is None and entry is None:
        raise ApiError(404, f"nothing recorded about {what} (and it is not in the queue)")
    steps = []
    for step in (story or {}).get("steps", []):
        if step["kind"] == "session":
            steps.append({**step, "items": _session_items(step)})
        else:
            steps.append(step)
    queue_id = story["queue_id"] if story is not None else what
    return console.render(
        "message.html",
        viewer,
        "queue",
        queue_id=queue_id,
        story=story,
        steps=steps,
        entry=entry,
        state=entry_state(entry) if entry is not None else None,
        header=header,
        back=f"/messages/{queue_id}",
        done=request.query_params.get("done", ""),
    )


# -- destinations -----------------------------------------------------------------------------


async def _destinations(request: Request, console: Console, viewer: Viewer) -> Response:
    found = await console.in_queue(lambda state: destinations(state.entries()))
    rows = [{"d": d, "meaning": EXPLANATIONS[d.reason].meaning} for d in found]
    return console.render(
        "destinations.html",
        viewer,
        "destinations",
        rows=rows,
        back="/destinations",
        done=request.query_params.get("done", ""),
    )


# -- events -----------------------------------------------------------------------------------


def _tail(path: Path | None) -> list[dict[str, Any]]:
    """The last events of the JSON-lines log, newest first."""
    if path is None or not path.exists():
        return []
    with path.open("rb") as log:
        log.seek(0, 2)
        size = log.tell()
        log.seek(max(0, size - EVENTS_TAIL_BYTES))
        data = log.read()
    lines = data.split(b"\n")
    if size > EVENTS_TAIL_BYTES:
        lines = lines[1:]  # the first is most likely cut
    records = []
    for line in lines[-EVENTS_TAIL_LINES - 1 :]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            records.append(record)
    return records[::-1][:EVENTS_TAIL_LINES]


def _event_names() -> list[str]:
    names: set[str] = set()
    pending = list(OpsEvent.__subclasses__())
    while pending:
        kind = pending.pop()
        names.add(kind.name)
        pending += kind.__subclasses__()
    return sorted(names)


def _summary_of(record: dict[str, Any]) -> str:
    fields = {k: v for k, v in record.items() if k not in ("ts", "event")}
    return " ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None, [], ()))


async def _events(request: Request, console: Console, viewer: Viewer) -> Response:
    settings = console.context.settings
    path = settings.log.events_file
    if path is not None and not Path(path).is_absolute():
        path = settings.server.data_dir / path
    records = await asyncio.to_thread(_tail, Path(path) if path is not None else None)
    rows = [
        {"ts": r.get("ts"), "event": r["event"], "text": _summary_of(r)}
        for r in records
        if isinstance(r.get("ts"), int | float)
    ]
    return console.render(
        "events.html",
        viewer,
        "events",
        rows=rows,
        names=json.dumps(_event_names()),
        keep=EVENTS_TAIL_LINES * 3,
    )


# -- configuration ----------------------------------------------------------------------------


async def _configuration(request: Request, console: Console, viewer: Viewer) -> Response:
    text = settings_to_toml(console.context.settings, show_secrets=False)
    return console.render("configuration.html", viewer, "configuration", text=text)


# -- hato test --------------------------------------------------------------------------------


def _writer(viewer: Viewer, what: str) -> None:
    if not viewer.may_write:
        raise ApiError(403, f"{viewer.name} is {viewer.role}: {what} is for admins")


async def _test(request: Request, console: Console, viewer: Viewer) -> Response:
    """``hato test`` from this server: the page's script posts the form to
    ``/api/v1/diagnostics`` and shows each step as it streams in, then the verdict."""
    _writer(viewer, "running hato test from this server")
    return console.render(
        "test.html",
        viewer,
        "test",
        default_timeout=f"{DEFAULT_TIMEOUT:g}",
        max_timeout=f"{MAX_TIMEOUT:g}",
        sender=f"postmaster@{console.context.settings.server.hostname}",
    )


# -- DNS records ------------------------------------------------------------------------------


async def _dns(request: Request, console: Console, viewer: Viewer) -> Response:
    """Per local domain, the records to publish beside what DNS says now: the API's own
    view (``/api/v1/dns/{domain}``), each domain's lookups in a thread of their own."""
    context = console.context
    domains = await asyncio.to_thread(_local_domains, context)
    views = await asyncio.gather(
        *(asyncio.to_thread(_dns_view, context, domain) for domain in domains)
    )
    return console.render("dns.html", viewer, "dns", views=views)


# -- test addresses ---------------------------------------------------------------------------


async def _probe(request: Request, console: Console, viewer: Viewer) -> Response:
    """A test address (``hato test --receive``); the page's script polls
    ``/api/v1/probes/{address}`` and shows the analysis of what arrives."""
    address = request.query_params.get("address", "").strip()
    record = None
    if address:
        if split_probe(address) is None:
            raise ApiError(400, f"{address!r} is not a test address (probe-...@domain)")
        context = console.context

        def read() -> dict[str, Any] | None:
            try:
                found = _probe_store(context).get(address)
            except ProbeError as error:
                raise ApiError(503, str(error)) from None
            return _probe_view(found, context) if found is not None else None

        record = await asyncio.to_thread(read)
        if record is None:
            raise ApiError(404, f"{address} is no test address made here")
    return console.render("probe.html", viewer, "probe", record=record)


async def _probe_create(request: Request, console: Console, viewer: Viewer) -> Response:
    values = await _read_form(request)
    if not hmac.compare_digest(_first(values, "csrf").encode(), viewer.csrf.encode()):
        raise ApiError(403, "missing or wrong CSRF token: reload the page and try again")
    _writer(viewer, "making a test address")
    wanted = _first(values, "domain").strip() or None
    context = console.context

    def create() -> str:
        domain = _probe_domain(context, wanted)
        try:
            return _probe_store(context).create(domain).address
        except ProbeError as error:
            raise ApiError(400, str(error)) from None

    address = await asyncio.to_thread(create)
    return RedirectResponse("/test-address?" + urlencode({"address": address}), status_code=303)
