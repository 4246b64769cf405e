"""The console's tools in a real browser (headless Debian chromium through Selenium) against
a real ``hato serve``: ``hato test`` run from the Test page against a second ``hato serve``
(its steps streamed in, then the verdict), the DNS page checked against a test zone
(tests/dns_server.py, the server's own ``dns.nameservers``), and a test address made with a
button, sent a message with smtplib and its analysis shown. Screenshots go to docs/console/
(1280x800), as the other console pages'."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable, Iterator
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

from dns_server import DnsServer
from hato.web import READ_ONLY, WEB_FILE, WebUsers

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

    from conftest import HatoProcess

PASSWORD = "tools-test-password"
READER, READER_PASSWORD = "tools-viewer", "tools-viewer-password"
DOMAIN = "tools.test"  # the local domain whose records the DNS page checks
HOSTNAME = "mx.test.example"  # the conftest servers' hostname
WAIT = 30.0

require_browser()
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def zone() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server
    assert not server.errors, "the test DNS server failed:\n" + "\n".join(server.errors)


@pytest.fixture(scope="module")
def server(
    module_hato_factory: Callable[..., HatoProcess],
    tmp_path_factory: pytest.TempPathFactory,
    zone: DnsServer,
) -> HatoProcess:
    secret = tmp_path_factory.mktemp("tools-secret") / "admin-password"
    secret.write_text(PASSWORD + "\n")
    return module_hato_factory(
        "tools",
        "auth.failure_delay=0",
        f'web.admin_password_file="{secret}"',
        f'dns.nameservers=["{zone.address}"]',
        "dns.timeout=2",
        f'server.local_domains=["{DOMAIN}"]',
    )


@pytest.fixture(scope="module")
def target(module_hato_factory: Callable[..., HatoProcess]) -> HatoProcess:
    """The server the Test page's run talks to."""
    return module_hato_factory("toolstarget")


@pytest.fixture(scope="module")
def base(server: HatoProcess) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def _wait(browser: WebDriver, condition: Callable[[], Any], what: str) -> Any:
    return wait(browser, condition, what, WAIT)


def _login(browser: WebDriver, base: str, name: str, password: str) -> None:
    login(browser, base, name, password, WAIT)


def _nav(browser: WebDriver) -> list[str]:
    return [a.get_attribute("href") or "" for a in browser.find_elements(By.CSS_SELECTOR, "nav a")]


def test_hato_test_from_the_console_streams_its_steps(
    browser: WebDriver, base: str, target: HatoProcess
) -> None:
    _login(browser, base, "admin", PASSWORD)
    assert {f"{base}/test", f"{base}/dns", f"{base}/test-address"} <= set(_nav(browser))
    browser.find_element(By.CSS_SELECTOR, "nav a[href='/test']").click()
    _wait(browser, lambda: browser.find_element(By.ID, "diag-form"), "the test form")
    browser.find_element(By.NAME, "target").send_keys(f"127.0.0.1:{target.port}")
    browser.find_element(By.NAME, "to").send_keys(f"postmaster@{HOSTNAME}")
    timeout = browser.find_element(By.NAME, "timeout")
    timeout.clear()
    timeout.send_keys("10")
    browser.find_element(By.ID, "diag-run").click()
    verdict = _wait(browser, lambda: browser.find_element(By.ID, "diag-verdict"), "the verdict")
    assert "pass" in (verdict.get_attribute("class") or "").split(), verdict.text
    assert verdict.text.startswith("PASS"), verdict.text
    rows = browser.find_elements(By.CSS_SELECTOR, "#diag-steps tbody tr")
    names = [row.find_elements(By.TAG_NAME, "td")[1].text.lower() for row in rows]
    for expected in ("connect", "banner", "ehlo", "starttls", "mail", "rcpt", "quit"):
        assert any(name.startswith(expected) for name in names), names
    first = rows[0].text
    assert f"[127.0.0.1]:{target.port}" in first and "pass" in first
    banner = next(row for row, name in zip(rows, names, strict=True) if name == "banner")
    assert "220" in banner.text
    screenshot(browser, "test")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield listener.getsockname()[1]


def test_each_step_shows_before_the_run_ends(
    browser: WebDriver, base: str, silent_port: int
) -> None:
    browser.get(f"{base}/test")
    browser.find_element(By.NAME, "target").send_keys(f"127.0.0.1:{silent_port}")
    timeout = browser.find_element(By.NAME, "timeout")
    timeout.clear()
    timeout.send_keys("3")
    browser.find_element(By.ID, "diag-run").click()
    # Connected at once; the banner never comes: the first row is there while the run
    # still waits, and the verdict only after the timeout.
    first = _wait(
        browser, lambda: browser.find_element(By.CSS_SELECTOR, "#diag-steps tbody tr"), "a step"
    )
    assert "connect" in first.text.lower() and "pass" in first.text
    assert not browser.find_elements(By.ID, "diag-verdict")
    assert "Testing 127.0.0.1" in browser.find_element(By.ID, "diag-status").text
    verdict = _wait(browser, lambda: browser.find_element(By.ID, "diag-verdict"), "the verdict")
    assert verdict.text.startswith("FAIL"), verdict.text
    assert browser.find_element(By.ID, "diag-run").is_enabled()


def test_a_bad_target_is_explained_on_the_test_page(browser: WebDriver, base: str) -> None:
    browser.get(f"{base}/test")
    browser.find_element(By.NAME, "target").send_keys("user@")
    browser.find_element(By.ID, "diag-run").click()
    status = _wait(
        browser,
        lambda: browser.find_element(By.CSS_SELECTOR, "#diag-status.problem"),
        "the error",
    )
    assert status.text and "Traceback" not in status.text
    assert not browser.find_elements(By.ID, "diag-verdict")


def test_the_dns_page_shows_what_is_published_and_what_is_missing(
    browser: WebDriver, base: str, zone: DnsServer
) -> None:
    zone.add(DOMAIN, "MX", f"10 {HOSTNAME}.")  # published; no SPF record at all
    browser.get(f"{base}/dns")
    card = browser.find_element(By.CSS_SELECTOR, f"article[data-domain='{DOMAIN}']")
    mx = card.find_element(By.CSS_SELECTOR, "tr[data-kind=mx]")
    assert mx.get_attribute("data-status") == "ok", mx.text
    assert f"10 {HOSTNAME}." in mx.text
    spf = card.find_element(By.CSS_SELECTOR, "tr[data-kind=spf]")
    assert spf.get_attribute("data-status") == "missing", spf.text
    assert "v=spf1 mx" in spf.text and "nothing" in spf.text
    verdict = card.find_element(By.CSS_SELECTOR, "h2 .verdict")
    assert "fail" in (verdict.get_attribute("class") or "") and "FAIL" in verdict.text
    screenshot(browser, "dns")


def test_a_test_address_shows_the_analysis_of_what_arrives(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    browser.get(f"{base}/test-address")
    assert not browser.find_elements(By.ID, "probe")
    browser.find_element(By.ID, "probe-new").click()
    shown = _wait(browser, lambda: browser.find_element(By.ID, "probe-address"), "the address")
    address = shown.text
    assert address.startswith("probe-") and address.endswith(f"@{DOMAIN}"), address
    _wait(
        browser,
        lambda: "waiting" in browser.find_element(By.ID, "probe-state").text,
        "the page to wait for mail",
    )
    assert not browser.find_elements(By.CSS_SELECTOR, ".analysis")
    message = (
        f"From: <alice@{HOSTNAME}>\r\nTo: <{address}>\r\nSubject: console probe\r\n"
        f"Message-ID: <console-probe@{HOSTNAME}>\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as smtp:
        smtp.sendmail(f"alice@{HOSTNAME}", [address], message)
    found = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".analysis"), "analysis")
    assert f"<alice@{HOSTNAME}>" in found.find_element(By.TAG_NAME, "h2").text
    text = found.text
    assert "console probe" in text and "127.0.0.1" in text
    checks = {
        row.get_attribute("data-check")
        for row in found.find_elements(By.CSS_SELECTOR, "tr[data-check]")
    }
    assert {"session", "spf", "dmarc"} <= checks, checks
    # No TLS on this session: said in plain words, with what to do.
    assert "the message came without TLS" in text and "Next:" in text
    assert "arrived" in browser.find_element(By.ID, "probe-state").text
    assert browser.find_element(By.ID, "probe").get_attribute("data-state") == "received"
    screenshot(browser, "probe")


def test_a_test_address_form_without_the_csrf_token_is_refused(
    browser: WebDriver, base: str
) -> None:
    browser.get(f"{base}/test-address")
    browser.execute_script("document.querySelector('form.actions input[name=csrf]').value = 'x'")
    browser.find_element(By.ID, "probe-new").click()
    problem = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, ".problem"), "error")
    assert "CSRF" in problem.text
    assert not browser.find_elements(By.ID, "probe-address")
    for query, expected in (
        ("someone@tools.test", "not a test address"),
        (f"probe-zzzzzzzz@{DOMAIN}", "no test address made here"),
    ):
        browser.get(f"{base}/test-address?address={query}")
        assert expected in browser.find_element(By.CSS_SELECTOR, ".problem").text


def test_a_read_only_user_may_not_run_tests_or_make_addresses(
    browser: WebDriver, base: str, server: HatoProcess
) -> None:
    with WebUsers(server.data_dir / WEB_FILE) as users:
        users.set_password(READER, READER_PASSWORD, READ_ONLY)
    _login(browser, base, READER, READER_PASSWORD)
    links = _nav(browser)
    assert f"{base}/dns" in links and f"{base}/test" not in links
    browser.get(f"{base}/test")
    problem = browser.find_element(By.CSS_SELECTOR, ".problem")
    assert "for admins" in problem.text
    assert not browser.find_elements(By.ID, "diag-form")
    browser.get(f"{base}/test-address")
    assert not browser.find_elements(By.ID, "probe-new")
    browser.get(f"{base}/dns")
    assert browser.find_elements(By.CSS_SELECTOR, f"article[data-domain='{DOMAIN}']")


def test_screenshots_are_1280_by_800() -> None:
    for name in ("test", "dns", "probe"):
        data = (SCREENSHOTS / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1280, 800), name
