"""The console in a real browser: Selenium driving Debian's Chromium headless (chromedriver)
against a console served over HTTP for a seeded local stack (a short drift scenario's data:
lake flushes, dead letters, metrics, alarm transitions, two registered models).

Screenshots of every page go to the test's output folder, and to ``$DRIFTLINE_SCREENSHOTS`` when
set (``DRIFTLINE_SCREENSHOTS=docs/img`` refreshes the README's images).

Needs the packages ``chromium`` and ``chromium-driver``: without them the tests skip saying so,
except under CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from etl.aws import AwsClients
from infra.console.app import build_app
from infra.console.context import Console, ConsoleClients
from infra.console.server import bind
from infra.emulator import start_emulator
from infra.model_server import start_model_server
from retrain import registry
from retrain.wiring import model_group
from tests.console_stack import XSS, SeededStack, seed, seed_models

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PAGES = {
    "overview": "/",
    "drift": "/drift?hours=3",
    "alarms": "/alarms",
    "models": "/models",
    "dead-letters": "/dead-letters",
    "predict": "/predict",
}


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not missing:
        return
    message = (
        f"browser tests need Chromium and its driver ({', '.join(missing)} missing):"
        " apt-get install -y chromium chromium-driver"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SeededStack]]:
    """A seeded stack and its console served by uvicorn on a free loopback port."""
    _browser_or_skip()
    import uvicorn

    d = tmp_path_factory.mktemp("console-browser")
    emu = start_emulator(d)
    server = start_model_server(d / "server", None, model_root=d / "cache")
    web: Any = None
    thread: threading.Thread | None = None
    try:
        clients = AwsClients(endpoint_url=emu.endpoint)
        seeded = seed(
            clients,
            d,
            hours=3,
            extra_settings={
                "model_server_url": server.url,
                "model_server_token_file": str(server.token_file),
                "model_cache_dir": str(d / "cache"),
            },
        )
        seed_models(clients, seeded.settings, d / "work")
        console = Console(
            seeded.settings, ConsoleClients(endpoint_url=emu.endpoint), seeded.contract, d
        )
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        app = build_app(console, hosts=("127.0.0.1",))
        web = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{port}", seeded
    finally:
        if web is not None:
            web.should_exit = True
        if thread is not None:
            thread.join(10)
        server.stop()
        emu.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1440,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, out: Path, name: str) -> None:
    """Save the page (full height) under ``out``, and ``$DRIFTLINE_SCREENSHOTS`` when set."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(900, min(int(height) + 40, 3200)))
    out.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out / f"console-{name}.png"))
    extra = os.environ.get("DRIFTLINE_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(extra) / f"console-{name}.png"))
    driver.set_window_size(1440, 1000)


def _wait(driver: Any, script: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = driver.execute_script(script)
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}")


def test_every_page_loads_and_the_charts_draw(
    served: tuple[str, SeededStack], browser: Any, tmp_path: Path
) -> None:
    url, seeded = served
    n_features = len(seeded.contract.features)
    for name, path in PAGES.items():
        # WHEN each page is opened
        browser.get(url + path)
        if name == "overview":
            # THEN every HTMX fragment replaced its "loading" placeholder
            _wait(
                browser, "return document.querySelectorAll('.flow-step h2, .grid3 h2').length == 7"
            )
        if name in ("drift", "models"):
            # THEN each chart drew a canvas of non-zero size holding data points
            want = n_features + 1 if name == "drift" else 1
            _wait(
                browser, f"return document.querySelectorAll('[data-drawn=\"1\"]').length == {want}"
            )
            charts = browser.execute_script(
                "return [...document.querySelectorAll('[data-chart]')].map(e => {"
                " const c = e.querySelector('canvas');"
                " return [c ? c.width : 0, c ? c.height : 0, Number(e.dataset.values)]; })"
            )
            assert len(charts) == want
            assert all(w > 0 and h > 0 and values > 0 for w, h, values in charts), charts
        assert "500" not in browser.title
        screenshot(browser, tmp_path, name)


def test_the_xss_payload_stays_text(served: tuple[str, SeededStack], browser: Any) -> None:
    url, _ = served
    # WHEN the dead letters page shows the <script> payload
    browser.get(url + "/dead-letters?reason=malformed_json")
    # THEN it is shown as text, no script ran (the payload would rename the document)
    texts = browser.execute_script(
        "return [...document.querySelectorAll('pre.payload')].map(p => p.textContent)"
    )
    assert any(XSS in t for t in texts)
    assert browser.title == "Dead letters · driftline console"
    assert browser.execute_script("return document.querySelectorAll('td script').length") == 0


def test_predict_form_returns_a_prediction(served: tuple[str, SeededStack], browser: Any) -> None:
    url, _ = served
    from selenium.webdriver.common.by import By

    browser.get(url + "/predict")
    # WHEN every numeric input gets a value inside its bounds and the form is sent
    for el in browser.find_elements(By.CSS_SELECTOR, "#predict-form input[type=number]"):
        low = el.get_attribute("min")
        el.clear()
        el.send_keys(str(max(float(low or 0), 1.0)).rstrip("0").rstrip("."))
    for el in browser.find_elements(By.CSS_SELECTOR, "#predict-form input[type=text]"):
        el.clear()
        el.send_keys("x")
    browser.find_element(By.ID, "predict-submit").click()
    # THEN the answer shows a score and the model that answered
    score = _wait(
        browser, "const e = document.querySelector('.prediction'); return e && e.textContent"
    )
    assert 0.0 <= float(score) <= 1.0
    assert browser.find_element(By.CSS_SELECTOR, "#answer dd.mono").text == "alpha"


def test_approve_changes_the_status_in_the_registry(
    served: tuple[str, SeededStack], browser: Any, tmp_path: Path
) -> None:
    url, seeded = served
    from selenium.webdriver.common.by import By

    sm = seeded.clients.client("sagemaker")
    assert registry.find(registry.list_versions(sm, model_group(seeded.settings)), 2).status == (
        registry.Approval.PENDING
    )
    # WHEN Approve is clicked on the staged v2, then confirmed
    browser.get(url + "/models")
    browser.find_element(By.CSS_SELECTOR, "#v2 a.btn[href$='action=approve']").click()
    _wait(browser, "return document.getElementById('confirm') !== null")
    screenshot(browser, tmp_path, "confirm")
    browser.find_element(By.ID, "confirm").click()
    _wait(browser, "return document.querySelector('.ok') !== null", timeout=60)
    # THEN the registry has v2 approved and serving, and the page says so
    versions = registry.list_versions(sm, model_group(seeded.settings))
    assert registry.find(versions, 2).status == registry.Approval.APPROVED
    champ = registry.champion(versions)
    assert champ is not None and champ.version == 2
    assert "serving: v2" in browser.find_element(By.CSS_SELECTOR, ".ok").text
