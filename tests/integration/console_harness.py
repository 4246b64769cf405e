"""The browser the console's tests drive: Debian's chromium through Debian's chromedriver
(Selenium downloads nothing), headless, pages of exactly 1280x800; and the few steps every
console test takes with it: wait for a condition, take a screenshot, log in.

A test module calls :func:`require_browser` before it imports anything from Selenium: it
skips the whole module, loudly, where the packages are missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The latest screenshots, kept for the README.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
PAGE = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}


def require_browser() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "THE CONSOLE'S BROWSER TESTS DID NOT RUN: /usr/bin/chromium or /usr/bin/chromedriver"
            " is missing (Debian packages chromium and chromium-driver; make system-deps)",
            allow_module_level=True,
        )
    pytest.importorskip("selenium.webdriver", reason="selenium (the dev extras)")


@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[WebDriver]:
    """One browser for a test module (import it into the module as ``browser_fixture``)."""
    with open_browser() as driver:
        yield driver


@contextlib.contextmanager
def open_browser() -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    options.add_argument("--disable-dev-shm-usage")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # The page itself 1280x800 (the window's size would include the browser's own frame).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PAGE)
    try:
        yield driver
    finally:
        driver.quit()


def wait(browser: WebDriver, condition: Callable[[], Any], what: str, timeout: float) -> Any:
    """``condition()`` once it is truthy; page errors on the way count as not yet."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(_: object) -> Any:
        try:
            return condition()
        except WebDriverException:
            return None

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(check, f"waiting for {what}")


def screenshot(browser: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def login(browser: WebDriver, base: str, name: str, password: str, timeout: float) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base}/login")
    browser.find_element(By.NAME, "username").send_keys(name)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
    wait(browser, lambda: browser.current_url.rstrip("/") == base, "the dashboard", timeout)
