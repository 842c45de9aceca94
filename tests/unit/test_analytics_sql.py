"""The shared SQL names no contract's columns, renders for any contract on both engines; the
compaction visibility rule and the scheduled compaction's input (pure)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from etl.analytics import SHARED_QUERIES, Engine, feature_summary, render, sql_file
from etl.compaction import CompactionManifest, CompactionRequest, visible_keys
from etl.contract import load_contract
from etl.exceptions import CompactionError
from etl.lake import LakeObject

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = [
    *sorted((ROOT / "etl" / "contracts").glob("*.toml")),
    ROOT / "tests" / "contracts" / "sensor_readings.toml",
]


def _statements(sql: str) -> str:
    return "\n".join(ln for ln in sql.splitlines() if not ln.lstrip().startswith("--"))


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_no_sql_file_names_a_contract_column(path: Path) -> None:
    # GIVEN a contract's field names  WHEN every SQL file's statements (comments are prose: the
    # word "hour" is not the card's column) are searched for them as identifiers
    names = {f.name for f in load_contract(path).fields}
    found = {
        (sql.name, n)
        for sql in (ROOT / "etl" / "sql").glob("*.sql")
        for n in names
        if re.search(rf"\b{re.escape(n)}\b", _statements(sql.read_text()))
    }
    # THEN none appears: the queries use lake columns and what the contract says
    assert found == set()


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_rendering_leaves_no_placeholder_and_differs_only_in_the_table(path: Path) -> None:
    contract = load_contract(path)
    for name in SHARED_QUERIES:
        duck = render(sql_file(name), contract, Engine.DUCKDB)
        athena = render(sql_file(name), contract, Engine.ATHENA)
        assert "{" not in duck and "{" not in athena
        assert athena == duck.replace(f'"{contract.name}"', f'"{contract.name}_current"')


def test_feature_summary_quotes_names_and_covers_every_feature_and_the_label() -> None:
    contract = load_contract(ROOT / "tests" / "contracts" / "sensor_readings.toml")
    sql = feature_summary(contract)
    assert 'avg(CAST("reading_order" AS DOUBLE)) AS "reading_order_mean"' in sql
    assert 'avg(CASE WHEN "door_open" THEN 1.0 ELSE 0.0 END) AS "door_open_true_share"' in sql
    assert 'count(DISTINCT "site") AS "site_distinct"' in sql
    assert '"failed_within_day_null_share"' in sql


def _manifest(objects: list[str], supersedes: list[str]) -> CompactionManifest:
    return CompactionManifest(
        "t", "2026-01-05", "09", "g", [LakeObject(k, 1, "2026-01-05", "09") for k in objects],
        supersedes,
    )  # fmt: skip


H = "lake/t/event_date=2026-01-05/event_hour=09/"


@pytest.mark.parametrize(
    ("listed", "manifests", "expected"),
    [
        # no compaction: the small objects
        ([H + "a.parquet", H + "b.parquet"], [], [H + "a.parquet", H + "b.parquet"]),
        # compacted objects written, not committed: still the small ones
        ([H + "a.parquet", H + "compacted-g-0000.parquet"], [], [H + "a.parquet"]),
        # committed: the compacted one only (before and after the small ones are deleted)
        (
            [H + "a.parquet", H + "compacted-g-0000.parquet"],
            [([H + "compacted-g-0000.parquet"], [H + "a.parquet"])],
            [H + "compacted-g-0000.parquet"],
        ),
        (
            [],
            [([H + "compacted-g-0000.parquet"], [H + "a.parquet"])],
            [H + "compacted-g-0000.parquet"],
        ),
        # a late flush (new key) next to a compaction: both
        (
            [H + "late.parquet"],
            [([H + "compacted-g-0000.parquet"], [H + "a.parquet"])],
            [H + "compacted-g-0000.parquet", H + "late.parquet"],
        ),
        # manifests and other files are never rows
        ([H + "x.json"], [], []),
    ],
)
def test_the_visibility_rule(
    listed: list[str], manifests: list[tuple[list[str], list[str]]], expected: list[str]
) -> None:
    assert visible_keys(listed, [_manifest(o, s) for o, s in manifests]) == expected


def test_the_scheduled_input_is_typed_and_checked() -> None:
    req = CompactionRequest.from_event({"older_than_s": 3600, "target_mb": 64, "grace_s": 0})
    assert req == CompactionRequest(timedelta(hours=1), 64 * 1024 * 1024, timedelta(0))
    assert CompactionRequest.from_event({}) == CompactionRequest()
    with pytest.raises(CompactionError, match=r"target_mb='big': expected a number >= 0"):
        CompactionRequest.from_event({"target_mb": "big"})
