"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
installed by `deploy/local/install-browser.sh`, which `make test` runs), driven by Selenium,
against the platform running as processes: a job dies, an operator logs in, finds it among
the dead letters, clicks Redrive, and watches it succeed.

Screenshots of every step go to `.local/screenshots/` (git-ignored).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobplane_local.paths import repo_root
from jobplane_local.testing import Infra
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.process_platform import ADMIN_KEY, ProcessPlatform, running_platform

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# The closed network refuses Chromium's own background connections; these flags stop them.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
SCREENSHOTS = repo_root() / ".local" / "screenshots"


@pytest.fixture(scope="module")
def platform(infra: Infra) -> Iterator[ProcessPlatform]:
    with running_platform(infra, "dashboard") as running:
        yield running


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium is not installed: run deploy/local/install-browser.sh (make test does)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # The driver is given: Selenium Manager (which would download one) is never run.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_an_operator_redrives_a_dead_job_and_sees_it_succeed(
    platform: ProcessPlatform, browser: WebDriver
) -> None:
    app = platform.register_app()
    job_id = platform.dead_job(app)  # its backend was down at every attempt
    platform.demo.start(print)  # the backend is back
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)

    # Without a session the dashboard sends the browser to its login page.
    browser.get(f"{platform.gateway_url}/dashboard")
    wait.until(expected_conditions.url_contains("/dashboard/login"))
    browser.find_element(By.ID, "admin-key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "login").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "counts")))
    # The live counts (htmx polling) show the dead job.
    wait.until(lambda d: int(d.find_element(By.ID, "count-dead").text) >= 1)
    assert app.app_id in browser.find_element(By.ID, "counts").text
    _shot(browser, "1-overview")

    browser.find_element(By.ID, "nav-dead").click()
    row = wait.until(expected_conditions.presence_of_element_located((By.ID, f"job-{job_id}")))
    assert "unreachable" in row.text
    _shot(browser, "2-dead-letters")

    row.find_element(By.CSS_SELECTOR, "button.redrive").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "action-message"), "Redriven")
    )
    _shot(browser, "3-redriven")
    # The job's page follows the new run live until it has succeeded.
    WebDriverWait(browser, 60, poll_frequency=0.3).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "job-status"), "succeeded")
    )
    assert browser.find_elements(By.CSS_SELECTOR, ".redrive-entry"), "the redrive is in the history"
    assert browser.find_element(By.ID, "result").text
    _shot(browser, "4-succeeded")

    job = platform.job(job_id)
    assert job["status"] == "succeeded"
    assert [r["by"] for r in job["redrives"]] == ["admin"]


def _log_in(browser: WebDriver, platform: ProcessPlatform) -> None:
    browser.get(f"{platform.gateway_url}/dashboard/login")
    browser.find_element(By.ID, "admin-key").send_keys(ADMIN_KEY)
    browser.find_element(By.ID, "login").click()
    WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.ID, "counts"))
    )


def test_an_operator_disables_an_app_and_enables_it_again(
    platform: ProcessPlatform, browser: WebDriver
) -> None:
    app = platform.register_app()
    _log_in(browser, platform)
    browser.get(f"{platform.gateway_url}/dashboard/apps")
    wait = WebDriverWait(browser, 10, poll_frequency=0.2)
    row = (By.ID, f"app-{app.app_id}")
    browser.find_element(*row).find_element(By.CSS_SELECTOR, "button.cancel").click()
    wait.until(expected_conditions.alert_is_present()).accept()  # "Disable ...?"
    wait.until(expected_conditions.text_to_be_present_in_element(row, "disabled"))
    _shot(browser, "5-app-disabled")
    listed = platform.http.get("/v1/admin/apps", headers=platform.admin_headers).json()
    assert [a["disabled"] for a in listed["apps"] if a["app_id"] == app.app_id] == [True]
    browser.find_element(*row).find_element(By.CSS_SELECTOR, "button.enable").click()
    wait.until(expected_conditions.text_to_be_present_in_element(row, "enabled"))
    listed = platform.http.get("/v1/admin/apps", headers=platform.admin_headers).json()
    assert [a["disabled"] for a in listed["apps"] if a["app_id"] == app.app_id] == [False]


def test_a_wrong_key_is_refused_and_every_asset_is_local(
    platform: ProcessPlatform, browser: WebDriver
) -> None:
    browser.get(f"{platform.gateway_url}/dashboard/login")
    browser.find_element(By.ID, "admin-key").send_keys("not-the-key")
    browser.find_element(By.ID, "login").click()
    # The click submits a form: the refusal is a new page, so wait for it to arrive.
    refusal = WebDriverWait(browser, 10, poll_frequency=0.2).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".error"))
    )
    assert "not the admin key" in refusal.text
    # htmx is loaded, and every script and style sheet comes from the gateway itself.
    assert browser.execute_script("return typeof htmx") == "object"
    assets = [e.get_attribute("src") for e in browser.find_elements(By.TAG_NAME, "script")]
    assets += [e.get_attribute("href") for e in browser.find_elements(By.TAG_NAME, "link")]
    assert assets
    assert all(str(a).startswith(platform.gateway_url) for a in assets), assets
    _shot(browser, "0-login-refused")


def test_screenshots_are_not_tracked_by_git() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    check = subprocess.run(  # noqa: S603 - fixed arguments
        ["git", "check-ignore", "-q", str(SCREENSHOTS / "dashboard-x.png")],  # noqa: S607
        cwd=repo_root(),
        check=False,
    )
    assert check.returncode == 0
