"""Deploy-time analytics in the emulator: the lake table with projection, the views (submitted to
moto's Athena, which records them without running SQL) and the named queries of the workgroup."""

from __future__ import annotations

import pytest

from etl.analytics import SHARED_QUERIES, Engine, render, sql_file
from etl.aws import AwsClients
from etl.contract import load_contract
from etl.settings import Settings
from infra.analytics import all_views, dataset_request, publish
from infra.lake_table import ensure_lake_table
from infra.stack import deploy_local

pytestmark = pytest.mark.functional


def test_publish_creates_the_table_views_and_named_queries_once(aws: AwsClients) -> None:
    # GIVEN the local stack
    contract = load_contract()
    outputs = deploy_local(aws).outputs
    ensure_lake_table(aws, outputs, contract, Settings())  # what `driftline deploy` does first
    athena = aws.client("athena")

    # WHEN the analytics are published twice (a redeploy)
    first = publish(aws, contract, outputs, run_views=True, sleep=lambda _s: None)
    second = publish(aws, contract, outputs, run_views=True, sleep=lambda _s: None)

    # THEN the lake table is in Glue with partition projection
    table = aws.client("glue").get_table(DatabaseName=outputs["GlueDatabase"], Name=contract.name)
    params = table["Table"]["Parameters"]
    assert params["projection.enabled"] == "true"
    assert params["projection.event_hour.digits"] == "2"
    # AND every view statement went to the workgroup, sources first
    assert (
        first.views
        == second.views
        == [
            "card_transactions_dead_letters",
            "card_transactions_compactions",
            "card_transactions_current",
            *(f"card_transactions_{q}" for q in SHARED_QUERIES),
        ]
    )
    ids = athena.list_query_executions(WorkGroup=outputs["AthenaWorkgroup"])["QueryExecutionIds"]
    queries = {
        athena.get_query_execution(QueryExecutionId=i)["QueryExecution"]["Query"] for i in ids
    }
    assert queries == set(all_views(contract, outputs["LakeBucket"]).values())
    # AND one named query per shared query, not duplicated by the second publish
    named_ids = athena.list_named_queries(WorkGroup=outputs["AthenaWorkgroup"])["NamedQueryIds"]
    named = [athena.get_named_query(NamedQueryId=i)["NamedQuery"] for i in named_ids]
    assert sorted((q["Name"], q["QueryString"]) for q in named) == sorted(
        (f"card_transactions: {q}", render(sql_file(q), contract, Engine.ATHENA))
        for q in SHARED_QUERIES
    )


def test_the_quicksight_dataset_reads_the_current_view_with_the_contracts_columns() -> None:
    contract = load_contract("tests/contracts/sensor_readings.toml")
    req = dataset_request(
        contract, "arn:aws:quicksight:us-east-1:1:datasource/s-athena", "s_lake", "arn:p", "1"
    )
    table = req["PhysicalTableMap"]["lake"]["RelationalTable"]
    assert (table["Schema"], table["Name"]) == ("s_lake", "sensor_readings_current")
    assert table["InputColumns"][:4] == [
        {"Name": "reading_id", "Type": "STRING"},
        {"Name": "device_serial", "Type": "STRING"},
        {"Name": "observed_at", "Type": "DATETIME"},
        {"Name": "temperature_c", "Type": "DECIMAL"},
    ]
    assert req["ImportMode"] == "DIRECT_QUERY"
