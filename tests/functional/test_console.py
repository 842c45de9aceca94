"""The console's handlers with Starlette's TestClient against the emulator: every page and
fragment, bad input, a backend that is down, CSRF refusal, the token check, escaping."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from etl.aws import AwsClients
from etl.exceptions import ConfigError
from infra.console.app import build_app
from infra.console.context import Console, ConsoleClients
from infra.console.security import Csrf, check_bind
from infra.emulator import EmulatorProcess, start_emulator
from infra.model_server import ServerProcess, start_model_server
from infra.procs import free_port
from retrain import registry
from retrain.wiring import model_group
from tests.console_stack import XSS, SeededStack, seed, seed_models

pytestmark = pytest.mark.functional
TOKEN = "t0ken-with-enough-characters"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeededStack, Path, str]]:
    """A seeded stack on its own emulator (module scope: seeding trains two models)."""
    d = tmp_path_factory.mktemp("console")
    emu: EmulatorProcess = start_emulator(d)
    server: ServerProcess | None = None
    try:
        clients = AwsClients(region="us-east-1", endpoint_url=emu.endpoint)
        server = start_model_server(d / "server", None, model_root=d / "cache")
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
        yield seeded, d, emu.endpoint
    finally:
        if server is not None:
            server.stop()
        emu.stop()


@pytest.fixture
def client(stack: tuple[SeededStack, Path, str]) -> TestClient:
    seeded, d, endpoint = stack
    console = Console(seeded.settings, ConsoleClients(endpoint_url=endpoint), seeded.contract, d)
    return TestClient(build_app(console, csrf=Csrf(b"k" * 32)))


def _csrf(client: TestClient) -> str:
    page = client.get("/predict").text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


def test_every_page_and_fragment_renders_the_seeded_stack(
    client: TestClient, stack: tuple[SeededStack, Path, str]
) -> None:
    seeded = stack[0]
    # WHEN every fragment of the overview is fetched THEN each shows its figure, no error
    names = ("stream", "consumers", "lake", "dead", "warehouse", "alarm", "serving")
    frags = {n: client.get(f"/fragment/{n}") for n in names}
    assert {n: r.status_code for n, r in frags.items()} == dict.fromkeys(frags, 200)
    assert "2 <small>open shards" in frags["stream"].text
    assert f"{seeded.rows:,} <small>rows" in frags["lake"].text
    assert "malformed_json" in frags["dead"].text and "non_utf8" in frags["dead"].text
    assert "v1" in frags["serving"].text and "alpha" in frags["serving"].text
    assert "st-ok" in frags["alarm"].text  # the evaluator's last transition went back to OK
    # the warehouse is not configured in this stack: said so, with the setting to set
    assert "DRIFTLINE_WAREHOUSE_DSN" in frags["warehouse"].text
    # the KCL lease table: both workers and their shards' checkpoints
    assert frags["consumers"].text.count('<tr><td title="shardId-') == 2
    assert "2 <small>workers" in frags["consumers"].text
    # AND the pages
    overview = client.get("/")
    assert overview.status_code == 200 and overview.text.count('hx-trigger="load, every 5s"') == 7
    drift = client.get("/drift?hours=3")
    assert drift.status_code == 200
    assert drift.text.count('data-chart="feature"') == len(seeded.contract.features)
    cw = seeded.clients.client("cloudwatch")
    prefix = f"{seeded.settings.stack_name}-drift-"
    alarm = cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"][0]
    # the alarm's own threshold goes to the charts
    assert f'"threshold":{json.dumps(alarm["Threshold"])}' in drift.text
    assert '"state":"ALARM"' in drift.text  # and its transitions
    assert "Current baseline" in drift.text and "latest window" in drift.text
    alarms = client.get("/alarms")
    assert alarms.status_code == 200 and "driftline-drift-score" in alarms.text
    assert alarms.text.count('<tr><td class="nowrap">') >= 2  # transitions listed
    models = client.get("/models")
    assert models.status_code == 200
    assert 'id="v1" class="serving"' in models.text and "PendingManualApproval" in models.text
    assert "challenger 0.86 vs champion 0.81" in models.text  # the run's reason
    assert "<th>trigger</th>" in models.text and "<td>quality</td>" in models.text  # and trigger
    assert client.get("/dead-letters").status_code == 200
    assert client.get("/models/2/confirm?action=approve").status_code == 200


def test_dead_letters_are_escaped_base64_cut_and_filterable(client: TestClient) -> None:
    # WHEN the dead letters page lists the seeded poison
    page = client.get("/dead-letters?limit=200").text
    # THEN the <script> payload is text, never markup
    assert XSS not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page
    # AND the non-UTF-8 payload is base64, the oversize one is cut with its size
    assert "//4gbm90IHV0Zi04IICB" in page
    assert "cut; 70,011 bytes" in page
    # WHEN filtered by reason THEN only that reason shows
    only = client.get("/dead-letters?reason=non_utf8").text
    assert only.count('<span class="badge">non_utf8</span>') == 1
    assert "malformed_json</span>" not in only


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/drift?hours=5", 400, "hours=&#39;5&#39; is not one of 1, 3, 6, 12, 24"),
        ("/dead-letters?reason=nope", 400, "reason &#39;nope&#39; is not one of"),
        ("/dead-letters?limit=x", 400, "limit=&#39;x&#39; is not one of"),
        ("/models/0/confirm?action=approve", 400, "is not a positive integer"),
        ("/models/2/confirm?action=delete", 400, "action &#39;delete&#39; is not one of"),
        ("/fragment/nope", 404, "no fragment &#39;nope&#39;"),
        ("/nowhere", 404, "Not Found"),
    ],
)
def test_bad_input_gets_a_4xx_page_with_the_message(
    client: TestClient, path: str, status: int, message: str
) -> None:
    resp = client.get(path)
    assert resp.status_code == status
    assert message in resp.text and "Traceback" not in resp.text


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    client: TestClient, stack: tuple[SeededStack, Path, str]
) -> None:
    seeded = stack[0]
    sm = seeded.clients.client("sagemaker")
    # WHEN approve is posted without / with a wrong token
    for form in ({}, {"csrf": "0" * 64}):
        resp = client.post("/models/2/approve", data=form, follow_redirects=False)
        assert resp.status_code == 403 and "CSRF token" in resp.text
    # THEN version 2 is still pending; GET on the action route is not allowed at all
    assert registry.find(registry.list_versions(sm, model_group(seeded.settings)), 2).status == (
        registry.Approval.PENDING
    )
    assert client.get("/models/2/approve").status_code == 405
    assert client.post("/predict", data={"mode": "json", "json": "{}"}).status_code == 403


def test_predict_form_validates_against_the_contract_and_answers(client: TestClient) -> None:
    token = _csrf(client)
    good = {"csrf": token, "mode": "form", "f.amount": "12.5", "f.merchant_category": "grocery",
            "f.hour": "3", "f.distance_from_home_km": "", "f.device": "mobile",
            "f.country": "US"}  # fmt: skip
    # WHEN a bound is broken THEN 400 naming the field and the bound, nothing is sent
    bad = client.post("/predict", data={**good, "f.hour": "24", "f.amount": "x"})
    assert bad.status_code == 400
    assert "must be ≤ 23, got 24" in bad.text and "expected a number, got &#39;x&#39;" in bad.text
    assert "nothing sent yet" in bad.text
    # WHEN the form is valid THEN the model server answers with a score and its model id
    ok = client.post("/predict", data=good)
    assert ok.status_code == 200
    assert re.search(r'class="r prediction">0\.\d+', ok.text)
    assert '<dd class="mono">alpha</dd>' in ok.text
    # AND raw JSON mode reaches the endpoint; invalid JSON is a 400
    raw = client.post("/predict", data={"csrf": token, "mode": "json", "json": "[1, 2"})
    assert raw.status_code == 400 and "is not valid JSON" in raw.text


def test_approve_from_the_console_runs_the_manual_gate(
    client: TestClient, stack: tuple[SeededStack, Path, str]
) -> None:
    seeded = stack[0]
    sm = seeded.clients.client("sagemaker")
    token = _csrf(client)
    # WHEN v2 is approved through the confirmation form
    resp = client.post("/models/2/approve", data={"csrf": token, "reason": "looks good"},
                       follow_redirects=False)  # fmt: skip
    assert resp.status_code == 303 and "serving%3A+v2" in resp.headers["location"]
    # THEN the registry has it approved and serving, with the reason
    versions = registry.list_versions(sm, model_group(seeded.settings))
    assert registry.find(versions, 2).status == registry.Approval.APPROVED
    champ = registry.champion(versions)
    assert champ is not None and champ.version == 2
    # WHEN rollback to a version that is not approved THEN the page says why, nothing changes
    registry.set_status(sm, registry.find(versions, 1), registry.Approval.REJECTED, reason="test")
    back = client.post("/models/1/rollback", data={"csrf": token}, follow_redirects=True)
    assert "version 1 is Rejected; rollback serves an earlier approved" in back.text


def test_a_backend_that_is_down_is_named_and_the_console_stays_up(
    stack: tuple[SeededStack, Path, str],
) -> None:
    # GIVEN the seeded stack's console pointed at an emulator that is not running (a free port)
    # and a model server that is gone
    # and a warehouse that does not answer
    seeded, d, _ = stack
    dead = f"http://127.0.0.1:{free_port()}"
    settings = seeded.settings.replace(
        endpoint_url=dead,
        model_server_url=dead,
        warehouse_dsn=f"postgresql://driftline_reader:s3cret@127.0.0.1:{free_port()}/postgres",
    )
    console = Console(settings, ConsoleClients(endpoint_url=dead), seeded.contract, d)
    client = TestClient(build_app(console))
    # WHEN pages and fragments are asked for THEN each answers, naming the failing call
    lake = client.get("/fragment/lake")
    assert lake.status_code == 200
    assert "Glue unavailable" in lake.text and "glue:GetPartitions" in lake.text
    drift = client.get("/drift")
    assert drift.status_code == 200 and "cloudwatch:GetMetricData failed" in drift.text
    for path in ("/", "/alarms", "/models", "/dead-letters", "/predict", "/fragment/serving"):
        resp = client.get(path)
        assert resp.status_code == 200, path
        assert "Traceback" not in resp.text
    # AND each overview card names its own backend, and no password reaches the page
    warehouse = client.get("/fragment/warehouse")
    assert warehouse.status_code == 200 and "PostgreSQL unavailable" in warehouse.text
    assert "s3cret" not in warehouse.text
    serving = client.get("/fragment/serving").text
    assert "SageMaker unavailable" in serving and "sagemaker:ListModelPackages" in serving
    assert "Kinesis unavailable" in client.get("/fragment/stream").text
    assert "DynamoDB unavailable" in client.get("/fragment/consumers").text
    # AND the model server being absent is said on the predict page
    answer = client.post(
        "/predict", data={"csrf": _csrf(client), "mode": "json", "json": '{"amount": 1}'}
    )
    assert "model server unavailable" in answer.text


def test_token_guards_every_request_and_a_public_bind_needs_one(
    stack: tuple[SeededStack, Path, str],
) -> None:
    seeded, d, endpoint = stack
    console = Console(seeded.settings, ConsoleClients(endpoint_url=endpoint), seeded.contract, d)
    client = TestClient(build_app(console, token=TOKEN))
    # WHEN no token is given THEN 401, for pages, fragments and static files alike
    for path in ("/", "/fragment/lake", "/static/console.css", "/models"):
        assert client.get(path).status_code == 401, path
    assert (
        client.get("/", headers={"Authorization": "Bearer wrong-token-xxxxxxxx"}).status_code == 401
    )
    # WHEN the header or the URL token is given THEN it passes (the URL sets a cookie)
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = client.get(f"/drift?hours=1&token={TOKEN}", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/drift?hours=1"
    assert client.get("/alarms").status_code == 200  # the cookie now carries it
    # AND binding beyond loopback without a token is refused, with one it is allowed
    with pytest.raises(ConfigError, match="not a loopback address"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", TOKEN)
    check_bind("127.0.0.1", None)


def test_host_header_is_checked_and_headers_forbid_inline_script(
    stack: tuple[SeededStack, Path, str],
) -> None:
    seeded, d, endpoint = stack
    console = Console(seeded.settings, ConsoleClients(endpoint_url=endpoint), seeded.contract, d)
    client = TestClient(build_app(console, hosts=("127.0.0.1", "localhost")),
                        base_url="http://127.0.0.1:8080")  # fmt: skip
    ok = client.get("/")
    assert ok.status_code == 200
    assert "script-src 'self'" in ok.headers["content-security-policy"]
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 421
