"""The console in a real browser: Selenium driving Debian's Chromium headless (chromedriver)
against the console of a local stack where the drift demo ran (``conftest.drift_demo``: the real
KCL daemon, the alarm, the retrain, the model swap; shared with ``test_demo``'s loop test, so the
suite runs one demo for both). The console is the one ``driftline local up`` started for the demo,
a process of its own, as after ``driftline demo --scenario drift --keep``.

What the demo does not leave, the test adds through the code that makes it:

* a staged model: the demo's retrain promotes its winner by itself, so the test registers the
  demo's serving artifact again with :func:`retrain.registry.register`, the call a retrain run's
  finish step makes (status ``PendingManualApproval`` until someone decides);
* a dead letter whose payload is ``<script>…</script>``: written by the consumer's own decoder and
  :class:`etl.lake.LakeWriter` into the demo's lake (its fleet is stopped after the demo).

Screenshots of every page go to the test's output folder, and to ``$DRIFTLINE_SCREENSHOTS`` when
set (``DRIFTLINE_SCREENSHOTS=docs/img`` refreshes the README's images).

Needs the packages ``chromium`` and ``chromium-driver``: without them the tests skip saying so,
except under CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from etl.aws import AwsClients
from etl.contract import Contract, load_contract
from etl.lake import LakeLayout, LakeWriter
from etl.records import RawRecord, RecordDecoder
from etl.settings import Settings
from infra.commands._common import serving_settings
from infra.context import LocalState, resolve_settings
from infra.local import console_url
from retrain import registry
from retrain.manual import serving_image
from retrain.wiring import model_group
from tests.console_stack import XSS

if TYPE_CHECKING:
    from tests.e2e.conftest import DriftDemo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
NEEDS = (
    f"browser tests need Chromium and its driver ({', '.join(MISSING)} missing):"
    " apt-get install -y chromium chromium-driver"
)
UNDER_CI = os.environ.get("CI", "").lower() == "true"
# Skipped before the shared demo starts; under CI a missing browser fails (see `browser`).
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(bool(MISSING) and not UNDER_CI, reason=NEEDS)]

PAGES = {
    "overview": "/",
    "drift": "/drift?hours=1",
    "alarms": "/alarms",
    "models": "/models",
    "dead-letters": "/dead-letters",
    "predict": "/predict",
}
#: The demo runs in the first test that asks for it (~5 min quiet; 19 min measured at load 25).
DEMO_TIMEOUT = 1_800


@dataclass(frozen=True)
class DemoConsole:
    url: str
    settings: Settings
    clients: AwsClients
    contract: Contract
    #: The version the demo's retrain promoted (serving when the test starts).
    trained: registry.ModelVersion
    #: The version this module staged for the Approve button.
    staged: int


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if MISSING:
        pytest.fail(NEEDS)  # only under CI: elsewhere the module is skipped
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="driftline-chromium-")
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
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def served(browser: Any, drift_demo: DriftDemo) -> DemoConsole:
    """The demo's own console, with a staged model and a ``<script>`` dead letter added."""
    state = LocalState.load(drift_demo.state)
    assert state is not None, f"the drift demo left no stack in {drift_demo.state}"
    url = console_url(state)
    assert url, "the drift demo's stack runs no console"
    settings, local = resolve_settings(
        env={**os.environ, "DRIFTLINE_STATE_DIR": str(drift_demo.state)}
    )
    settings = serving_settings(settings, local)  # the model server the demo left up
    clients = AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)
    contract = load_contract(settings.contract_path)
    trained, staged = stage_model(settings, clients)
    write_dead_letter(settings, clients, contract, XSS.encode())
    return DemoConsole(url.rstrip("/"), settings, clients, contract, trained, staged)


def stage_model(settings: Settings, clients: AwsClients) -> tuple[registry.ModelVersion, int]:
    """Register the demo's serving model again as a candidate awaiting a decision (the status a
    retrain's finish step registers it with); returns (the serving version, the staged one)."""
    sm = clients.client("sagemaker")
    group = model_group(settings)
    champ = registry.champion(registry.list_versions(sm, group))
    assert champ is not None, "the drift demo promoted no model"
    staged = registry.register(
        sm,
        group,
        registry.Candidate(
            model_data_url=champ.model_data_url,
            image_uri=serving_image(settings),
            metrics=champ.metrics,
            champion_metrics=champ.metrics,
            lineage={**champ.lineage, "run_id": f"{champ.lineage.get('run_id', '')}-staged"},
            description="staged by the console's browser test: awaiting a manual decision",
        ),
    )
    return champ, staged.version


def write_dead_letter(
    settings: Settings, clients: AwsClients, contract: Contract, payload: bytes
) -> None:
    """One bad record through the consumer's decoder and lake writer (a flush of its own)."""
    now = datetime.now(UTC)
    seq = str(10**20 + int(now.timestamp()))  # beyond the demo's sequence numbers: a new flush
    batch = RecordDecoder(contract).decode(
        [RawRecord(payload, seq, "browser-test", int(now.timestamp() * 1000))],
        shard_id="shardId-000000000000",
        ingest_time=now,
    )
    assert len(batch.dead_letters) == 1
    layout = LakeLayout(bucket=settings.require("lake_bucket"), table=contract.name)
    LakeWriter(contract, layout, clients.client("s3")).write(
        "shardId-000000000000", seq, seq, batch.table, batch.dead_letters
    )


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


def _wait(driver: Any, script: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = driver.execute_script(script)
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}")


def _charts_drew(driver: Any, want: int) -> None:
    """Each chart drew a canvas of non-zero size holding data points."""
    _wait(driver, f"return document.querySelectorAll('[data-drawn=\"1\"]').length == {want}")
    charts = driver.execute_script(
        "return [...document.querySelectorAll('[data-chart]')].map(e => {"
        " const c = e.querySelector('canvas');"
        " return [c ? c.width : 0, c ? c.height : 0, Number(e.dataset.values)]; })"
    )
    assert len(charts) == want
    assert all(w > 0 and h > 0 and values > 0 for w, h, values in charts), charts


@pytest.mark.timeout(DEMO_TIMEOUT)
def test_every_page_loads_and_the_charts_draw(
    served: DemoConsole, browser: Any, tmp_path: Path
) -> None:
    # GIVEN the console of a stack where the drift demo ran
    n_features = len(served.contract.features)
    for name, path in PAGES.items():
        # WHEN each page is opened
        browser.get(served.url + path)
        if name == "overview":
            # THEN every HTMX fragment replaced its "loading" placeholder, none names a failure
            _wait(
                browser, "return document.querySelectorAll('.flow-step h2, .grid3 h2').length == 7"
            )
            errors = browser.execute_script(
                "return [...document.querySelectorAll('.err')].map(e => e.textContent)"
            )
            assert errors == [], errors
            # AND the warehouse card has the demo's rows and its lag behind the lake: the
            # test's own dead-letter flush is the one flush the demo's loader did not see
            card = browser.find_element("css selector", "#frag-warehouse").text
            assert "1 flush behind" in card, card
        if name == "drift":
            # THEN the score and every feature's series drew, with the demo's data
            _charts_drew(browser, n_features + 1)
        if name == "models":
            # THEN the metric chart drew, and the demo's versions are listed
            _charts_drew(browser, 1)
            rows = "return document.querySelectorAll('#versions tbody tr').length"
            assert browser.execute_script(rows) >= 3
        if name == "alarms":
            # THEN the drift alarm's transitions include the demo's ALARM
            assert "ALARM" in browser.find_element("css selector", "main").text
        assert browser.title.split(" ")[0] != "500", browser.title
        screenshot(browser, tmp_path, name)


def test_the_xss_payload_stays_text(served: DemoConsole, browser: Any) -> None:
    # WHEN the dead letters page shows the <script> payload next to the demo's poison records
    browser.get(served.url + "/dead-letters?reason=malformed_json")
    # THEN it is shown as text, no script ran (the payload would rename the document)
    texts = browser.execute_script(
        "return [...document.querySelectorAll('pre.payload')].map(p => p.textContent)"
    )
    assert any(XSS in t for t in texts)
    assert browser.title == "Dead letters · driftline console"
    assert browser.execute_script("return document.querySelectorAll('td script').length") == 0


def test_predict_form_returns_a_prediction_from_the_demo_model(
    served: DemoConsole, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(served.url + "/predict")
    # WHEN every numeric input gets a value inside its bounds and the form is sent
    for el in browser.find_elements(By.CSS_SELECTOR, "#predict-form input[type=number]"):
        low = el.get_attribute("min")
        el.clear()
        el.send_keys(str(max(float(low or 0), 1.0)).rstrip("0").rstrip("."))
    for el in browser.find_elements(By.CSS_SELECTOR, "#predict-form input[type=text]"):
        el.clear()
        el.send_keys("x")
    browser.find_element(By.ID, "predict-submit").click()
    # THEN the answer shows a score, from the model the demo's retrain trained and promoted
    score = _wait(
        browser, "const e = document.querySelector('.prediction'); return e && e.textContent"
    )
    assert 0.0 <= float(score) <= 1.0
    answered = browser.find_element(By.CSS_SELECTOR, "#answer dd.mono").text
    assert answered == served.trained.lineage["run_id"]
    assert answered == _serving_model_id(served.settings)
    screenshot(browser, tmp_path, "predict-answer")


def _serving_model_id(settings: Settings) -> str:
    """The local model server's own word on what it serves (``GET /model``)."""
    assert settings.model_server_url, "the demo's stack records no model server"
    with urllib.request.urlopen(settings.model_server_url.rstrip("/") + "/model", timeout=10) as r:
        return str(json.load(r)["model_id"])


def test_approve_changes_the_status_in_the_registry(
    served: DemoConsole, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    sm = served.clients.client("sagemaker")
    group = model_group(served.settings)
    v = served.staged
    # GIVEN the staged version awaits a decision, the demo's model serves
    assert registry.find(registry.list_versions(sm, group), v).status == registry.Approval.PENDING
    # WHEN Approve is clicked on it, then confirmed
    browser.get(served.url + "/models")
    browser.find_element(By.CSS_SELECTOR, f"#v{v} a.btn[href$='action=approve']").click()
    _wait(browser, "return document.getElementById('confirm') !== null")
    screenshot(browser, tmp_path, "confirm")
    browser.find_element(By.ID, "confirm").click()
    _wait(browser, "return document.querySelector('.ok, .err') !== null", timeout=90)
    # THEN the registry has it approved and serving, and the page says so
    assert browser.execute_script("return document.querySelector('.err')") is None, (
        browser.find_element(By.CSS_SELECTOR, ".err").text
    )
    versions = registry.list_versions(sm, group)
    assert registry.find(versions, v).status == registry.Approval.APPROVED
    champ = registry.champion(versions)
    assert champ is not None and champ.version == v
    assert f"serving: v{v}" in browser.find_element(By.CSS_SELECTOR, ".ok").text
    assert "serving" in browser.find_element(By.CSS_SELECTOR, f"#v{v}").text
