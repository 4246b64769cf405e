"""The console in a real browser (headless Debian chromium through Selenium) against a real
``hato serve``: log in, watch a message arrive on the dashboard and in the queue, read its
story, hold and release it (checked with ``hato queue list --json``), read why its
destination is deferred, and the other pages. Each page's screenshot is saved to
docs/console/ (1280x800), which the README shows."""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from console_harness import (  # noqa: F401 - browser_fixture provides `browser`
    SCREENSHOTS,
    browser_fixture,
    login,
    require_browser,
    screenshot,
    wait,
)

from hato.delivery import EXPLANATIONS, Reason
from hato.web import READ_ONLY, WEB_FILE, WebUsers

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from conftest import HatoProcess

PASSWORD = "console-test-password"
READER, READER_PASSWORD = "viewer", "viewer-test-password"
WAIT = 20.0

require_browser()
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def server(
    module_hato_factory: Callable[..., HatoProcess], tmp_path_factory: pytest.TempPathFactory
) -> HatoProcess:
    secret = tmp_path_factory.mktemp("console-secret") / "admin-password"
    secret.write_text(PASSWORD + "\n")
    return module_hato_factory(
        "console",
        "auth.failure_delay=0",
        f'web.admin_password_file="{secret}"',
        # A secret the configuration page must not show.
        'relay.smarthost_password="do-not-show-this"',
    )


@pytest.fixture(scope="module")
def base(server: HatoProcess) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def _wait(browser: WebDriver, condition: Callable[[], Any], what: str) -> Any:
    return wait(browser, condition, what, WAIT)


def _login(browser: WebDriver, base: str, name: str, password: str) -> None:
    login(browser, base, name, password, WAIT)


def _send(server: HatoProcess, subject: str) -> None:
    message = (
        f"From: alice@example.org\r\nTo: bob@{server.hostname}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.org>\r\n\r\nbody\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("alice@example.org", [f"bob@{server.hostname}"], message)


def _cli_queue(server: HatoProcess) -> dict[str, dict[str, Any]]:
    listed = server.cli("queue", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {m["queue_id"]: m for m in json.loads(listed.stdout)}


def _deferred_id(server: HatoProcess, subject: str) -> str:
    """The queue ID of the message sent with ``subject``, once its first attempt failed."""
    queued = server.wait_for_event("queued", message_id=f"<{subject}@example.org>")
    queue_id = str(queued["queue_id"])
    server.wait_for_event("deferred", queue_id=queue_id)
    return queue_id


def _figure(browser: WebDriver, series: str) -> int:
    return int(browser.find_element(By.CSS_SELECTOR, f"[data-series='{series}']").text)


def test_pages_need_a_login(browser: WebDriver, base: str) -> None:
    browser.delete_all_cookies()
    for page in ("/", "/queue", "/destinations", "/events", "/configuration"):
        browser.get(base + page)
        assert browser.current_url == f"{base}/login", page
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    alert = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, "[role=alert]"), "alert")
    assert "Wrong user name or password" in alert.text
    screenshot(browser, "login")


def test_a_message_arrives_live_on_the_dashboard_and_in_the_queue(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    _login(browser, base, "admin", PASSWORD)
    _wait(
        browser,
        lambda: "on" in browser.find_element(By.ID, "live-state").get_attribute("class"),
        "the live stream to open",
    )
    before = _figure(browser, "received")
    _send(server, "dashboard-first")
    queue_id = _deferred_id(server, "dashboard-first")
    # No reload: the page's event stream brings the new figures.
    _wait(browser, lambda: _figure(browser, "received") == before + 1, "received + 1")
    _wait(browser, lambda: _figure(browser, "deferred") >= 1, "a deferral counted")
    assert browser.find_elements(By.CSS_SELECTOR, "svg polyline.series.received")
    assert int(browser.find_element(By.ID, "queue-size").text) >= 1
    screenshot(browser, "dashboard")

    browser.get(f"{base}/queue")
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-queue-id='{queue_id}']")
    assert "deferred" in row.text and "alice@example.org" in row.text
    assert "Connection refused" in row.text or "connect" in row.text
    # Filtered by state and sender, sorted by size: still there; another sender: gone.
    browser.get(f"{base}/queue?state=deferred&sender=alice&sort=size&order=desc")
    assert browser.find_elements(By.CSS_SELECTOR, f"tr[data-queue-id='{queue_id}']")
    browser.get(f"{base}/queue?sender=nobody-sends-this")
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr[data-queue-id='{queue_id}']")
    browser.get(f"{base}/queue")
    screenshot(browser, "queue")


def test_the_story_of_a_message_with_its_transcripts(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    _send(server, "story")
    queue_id = _deferred_id(server, "story")
    browser.get(f"{base}/queue")
    browser.find_element(By.CSS_SELECTOR, f"a[href='/messages/{queue_id}']").click()

    def timeline() -> str | None:
        text = browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
        return text if "Received in session" in text and "deferred" in text else None

    # The recorder writes in batches: the story may need a reload to be whole.
    deadline = time.monotonic() + WAIT
    while (text := timeline()) is None:
        assert time.monotonic() < deadline, browser.page_source[:2000]
        time.sleep(0.3)
        browser.refresh()
    assert "C: MAIL FROM:<ALICE@EXAMPLE.ORG>" in text.upper()
    assert "S: 250" in text
    assert queue_id in browser.find_element(By.TAG_NAME, "h1").text
    screenshot(browser, "message")


def test_hold_and_release_from_the_queue_page(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    _send(server, "hold-me")
    queue_id = _deferred_id(server, "hold-me")
    assert _cli_queue(server)[queue_id]["held"] is False
    browser.get(f"{base}/queue")
    browser.find_element(By.CSS_SELECTOR, f"input[name=queue_id][value='{queue_id}']").click()
    browser.find_element(By.CSS_SELECTOR, "#bulk button[value=hold]").click()
    done = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".done"), "result")
    assert "1 held" in done.text
    assert _cli_queue(server)[queue_id]["held"] is True
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-queue-id='{queue_id}']")
    assert "held" in row.text

    # Released from the message's own page.
    browser.get(f"{base}/messages/{queue_id}")
    browser.find_element(By.CSS_SELECTOR, "form.actions button[value=release]").click()
    done = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".done"), "result")
    assert "1 released" in done.text
    assert browser.current_url.startswith(f"{base}/messages/{queue_id}")
    assert _cli_queue(server)[queue_id]["held"] is False


def test_a_form_without_the_csrf_token_is_refused(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    _send(server, "csrf")
    queue_id = _deferred_id(server, "csrf")
    browser.get(f"{base}/queue")
    browser.execute_script("document.querySelector('#bulk input[name=csrf]').value = 'forged'")
    browser.find_element(By.CSS_SELECTOR, f"input[name=queue_id][value='{queue_id}']").click()
    browser.find_element(By.CSS_SELECTOR, "#bulk button[value=hold]").click()
    problem = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".problem"), "error")
    assert "CSRF" in problem.text
    assert _cli_queue(server)[queue_id]["held"] is False


def test_the_deferred_destination_and_its_reason(browser: WebDriver, base: str) -> None:
    browser.get(f"{base}/destinations")
    card = browser.find_element(By.CSS_SELECTOR, "article[data-domain='relay.test.example']")
    explanation = EXPLANATIONS[Reason.CONNECTION]
    assert "connection" in card.find_element(By.CSS_SELECTOR, ".reason").text
    assert explanation.summary in card.text
    assert explanation.next_step in card.text
    assert "Connection refused" in card.text
    assert card.find_elements(By.CSS_SELECTOR, "button[value=flush]")
    screenshot(browser, "destinations")


def test_the_events_page_tails_live(browser: WebDriver, base: str, server: HatoProcess) -> None:
    browser.get(f"{base}/events")
    _wait(
        browser,
        lambda: "on" in browser.find_element(By.ID, "live-state").get_attribute("class"),
        "the live stream to open",
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#events tr.ev.queued")  # from the log
    _send(server, "tail")
    queue_id = _deferred_id(server, "tail")
    _wait(
        browser,
        lambda: queue_id in browser.find_element(By.CSS_SELECTOR, "#events tr.ev.fresh").text,
        "the new event at the top",
    )
    screenshot(browser, "events")


def test_accounts_and_configuration(browser: WebDriver, base: str, server: HatoProcess) -> None:
    browser.get(f"{base}/accounts")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert f"@{server.hostname}" in text and "hold@relay.test.example" in text
    browser.get(f"{base}/configuration")
    config = browser.find_element(By.CSS_SELECTOR, "pre.config").text
    assert f'hostname = "{server.hostname}"' in config
    assert "do-not-show-this" not in config and "********" in config
    screenshot(browser, "configuration")


def _users(server: HatoProcess) -> dict[str, dict[str, Any]]:
    listed = server.cli("user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {u["address"]: u for u in json.loads(listed.stdout)}


def _done(browser: WebDriver) -> str:
    return str(
        _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".done"), "result").text
    )


def test_a_user_added_changed_and_removed_on_the_accounts_page(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    address = f"carol@{server.hostname}"
    browser.get(f"{base}/accounts")
    form = browser.find_element(By.ID, "add-user")
    form.find_element(By.NAME, "address").send_keys(address)
    form.find_element(By.NAME, "password").send_keys("carol-password")
    form.find_element(By.NAME, "quota").send_keys("2M")
    form.find_element(By.CSS_SELECTOR, "button").click()
    assert f"added user {address} (quota 2M, password set)" in _done(browser)
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-user='{address}']")
    assert "2.0 MiB" in row.text and "set" in row.text
    assert _users(server)[address]["quota"] == 2 << 20
    assert _users(server)[address]["has_password"] is True
    screenshot(browser, "accounts")

    row.find_element(By.NAME, "quota").send_keys("1M")
    row.find_element(By.XPATH, ".//button[text()='Set quota']").click()
    assert f"set the quota of {address} to 1M" in _done(browser)
    assert _users(server)[address]["quota"] == 1 << 20

    # A form whose CSRF token is not the session's changes nothing.
    browser.execute_script("document.querySelector('#add-user input[name=csrf]').value = 'forged'")
    form = browser.find_element(By.ID, "add-user")
    form.find_element(By.NAME, "address").send_keys(f"mallory@{server.hostname}")
    form.find_element(By.CSS_SELECTOR, "button").click()
    problem = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".problem"), "error")
    assert "CSRF" in problem.text
    assert f"mallory@{server.hostname}" not in _users(server)

    browser.get(f"{base}/accounts")
    browser.execute_script("window.confirm = () => true")  # the Remove button asks first
    row = browser.find_element(By.CSS_SELECTOR, f"tr[data-user='{address}']")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    assert f"removed user {address}" in _done(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr[data-user='{address}']")
    assert address not in _users(server)


def test_a_read_only_user_sees_no_actions_and_cannot_post(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    with WebUsers(server.data_dir / WEB_FILE) as users:
        users.set_password(READER, READER_PASSWORD, READ_ONLY)
    _login(browser, base, READER, READER_PASSWORD)
    for page in ("/queue", "/destinations"):
        browser.get(base + page)
        assert not browser.find_elements(By.CSS_SELECTOR, "button[name=action]"), page
    browser.get(f"{base}/accounts")
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-domain]")
    assert not browser.find_elements(By.CSS_SELECTOR, "main form"), "no account forms"
    queue_id = next(iter(_cli_queue(server)))
    browser.get(f"{base}/messages/{queue_id}")
    assert not browser.find_elements(By.CSS_SELECTOR, "button[name=action]")
    # A form posted anyway (with the session's own token) is refused.
    csrf = browser.find_element(By.CSS_SELECTOR, "header input[name=csrf]").get_attribute("value")
    browser.execute_script(
        """
        const form = document.createElement("form");
        form.method = "post"; form.action = "/queue";
        const fields = [["csrf", arguments[0]], ["action", "hold"], ["queue_id", arguments[1]]];
        for (const [k, v] of fields) {
          const input = document.createElement("input");
          input.type = "hidden"; input.name = k; input.value = v; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();
        """,
        csrf,
        queue_id,
    )
    problem = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".problem"), "error")
    assert "may only read" in problem.text
    assert _cli_queue(server)[queue_id]["held"] is False


def test_screenshots_are_small() -> None:
    for shot in SCREENSHOTS.glob("*.png"):
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1280, 800), shot
