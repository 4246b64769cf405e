"""What the HTTP service costs SMTP: the same load against ``hato serve`` three ways.

- ``off``: ``web.listen = []``, no HTTP service at all;
- ``idle``: the HTTP service on a loopback port, nobody connected;
- ``browser``: a headless chromium (Selenium, /usr/bin/chromedriver) logged in to the
  console and watching the live dashboard (``/``: the event stream, and the counts it
  fetches again at most every 2 s while mail moves) all through the load.

The three run side by side, alternated (off, idle, browser, off, ...) ``--rounds`` times,
each on a fresh data directory. The load is bench/accept.py's generator: N sessions, one
command at a time, each message on its own connection, 1 KB to ``postmaster@localhost``
(delivered to the embedded default's Maildir). Reported per run: accepted messages/s (all
``250 ... queued as`` received), and the server's CPU ms per message from /proc, counted
from the first message until the last is in the Maildir (the server process alone; the
browser's CPU, chromedriver and every chromium process, is counted apart over the same
interval). The median of the rounds is what to compare.

    .venv/bin/python bench/web_cost.py                      # 3 rounds, 10 sessions, 1500 msgs
    .venv/bin/python bench/web_cost.py --rounds 1 --messages 300 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accept import delivered_count, message_body, session, wait_delivered
from procstat import cpu_seconds

HATO = Path(sys.executable).with_name("hato")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "bench-web-password"
MODES = ("off", "idle", "browser")
START_TIMEOUT = 20.0


def start_hato(data_dir: Path, web: bool) -> tuple[subprocess.Popen[bytes], int, int | None]:
    """A server on loopback ports; its SMTP port and its HTTP port (None when off)."""
    secret = data_dir.parent / "admin-password"
    secret.write_text(PASSWORD + "\n")
    listen = '["127.0.0.1:0"]' if web else "[]"
    proc = subprocess.Popen(
        [
            *(str(HATO), "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"),
            *("-o", f"web.listen={listen}", "-o", f'web.admin_password_file="{secret}"'),
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    events = data_dir / "log" / "events.jsonl"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if events.exists():
            for line in events.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == "server_started":
                    smtp = int(record["listen"][0].rsplit(":", 1)[1])
                    urls = record.get("web") or []
                    return proc, smtp, int(urls[0].rsplit(":", 1)[1]) if urls else None
        if proc.poll() is not None:
            raise RuntimeError(f"hato exited with {proc.returncode} while starting")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("hato did not start")


@contextlib.contextmanager
def dashboard(web_port: int) -> Iterator[int]:
    """A headless chromium logged in and showing ``/``; yields chromedriver's pid (whose
    process tree holds every chromium process)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    options.add_argument("--disable-dev-shm-usage")
    service = Service(str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        base = f"http://127.0.0.1:{web_port}"
        driver.get(f"{base}/login")
        driver.find_element(By.NAME, "username").send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        WebDriverWait(driver, 20).until(lambda d: d.current_url.rstrip("/") == base)
        # The dashboard's event stream is open ("live") before the load starts.
        WebDriverWait(driver, 20).until(
            lambda d: "on" in d.find_element(By.ID, "live-state").get_attribute("class")
        )
        process = service.process
        assert process is not None
        yield process.pid
    finally:
        driver.quit()


def load(port: int, sessions: int, messages: int, size: int) -> int:
    body = message_body(size, 0)
    per_session = max(1, messages // sessions)

    async def drive() -> int:
        counts = await asyncio.gather(
            *(session(port, per_session, body, False) for _ in range(sessions))
        )
        return sum(counts)

    return asyncio.run(drive())


def run(mode: str, sessions: int, messages: int, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hato-bench-web-", dir=Path.cwd()) as tmp:
        data_dir = Path(tmp) / "data"
        proc, port, web_port = start_hato(data_dir, web=mode != "off")
        try:
            with contextlib.ExitStack() as stack:
                browser_pid = None
                if mode == "browser":
                    assert web_port is not None
                    browser_pid = stack.enter_context(dashboard(web_port))
                browser_before = cpu_seconds(browser_pid) if browser_pid else 0.0
                cpu_before = cpu_seconds(proc.pid)
                started = time.perf_counter()
                sent = load(port, sessions, messages, size)
                accepted = time.perf_counter() - started
                wait_delivered(data_dir, sent)
                cpu = cpu_seconds(proc.pid) - cpu_before
                browser = cpu_seconds(browser_pid) - browser_before if browser_pid else None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        if delivered_count(data_dir) != sent:
            raise RuntimeError(f"{sent} acknowledged but {delivered_count(data_dir)} delivered")
    return {
        "mode": mode,
        "messages": sent,
        "accepted_per_s": round(sent / accepted, 1),
        "server_cpu_ms_per_msg": round(cpu * 1000 / sent, 3),
        "browser_cpu_ms_per_msg": None if browser is None else round(browser * 1000 / sent, 3),
    }


def summary(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for mode in MODES:
        runs = [r for r in results if r["mode"] == mode]
        if not runs:
            continue
        row: dict[str, Any] = {"mode": mode, "runs": len(runs)}
        for key in ("accepted_per_s", "server_cpu_ms_per_msg", "browser_cpu_ms_per_msg"):
            values = [r[key] for r in runs if r[key] is not None]
            row[key] = round(statistics.median(values), 3) if values else None
            row[f"{key}_all"] = values
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}; choose from {MODES}")
    if "browser" in modes and not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        parser.error("the browser mode needs /usr/bin/chromium and /usr/bin/chromedriver")
    results = []
    for round_number in range(1, args.rounds + 1):
        for mode in modes:
            result = run(mode, args.sessions, args.messages, args.size)
            result["round"] = round_number
            results.append(result)
            if not args.json:
                browser = result["browser_cpu_ms_per_msg"]
                print(
                    f"round {round_number} {mode:<8} {result['messages']:>5} msgs: accepted"
                    f" {result['accepted_per_s']:>7.1f}/s, server CPU"
                    f" {result['server_cpu_ms_per_msg']:.3f} ms/msg"
                    + ("" if browser is None else f", browser CPU {browser:.3f} ms/msg"),
                    flush=True,
                )
    rows = summary(results)
    if args.json:
        print(json.dumps({"runs": results, "median": rows}, indent=2))
        return
    print("median of the rounds:")
    for row in rows:
        browser = row["browser_cpu_ms_per_msg"]
        print(
            f"  {row['mode']:<8} accepted {row['accepted_per_s']:>7.1f}/s, server CPU"
            f" {row['server_cpu_ms_per_msg']:.3f} ms/msg"
            + ("" if browser is None else f", browser CPU {browser:.3f} ms/msg")
        )


if __name__ == "__main__":
    main()
