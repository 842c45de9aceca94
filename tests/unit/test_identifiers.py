"""The one identifier rule (contract and field names) and each driver's identifier quoting."""

from __future__ import annotations

import pytest

from etl.contract import parse_contract
from etl.exceptions import ContractError
from etl.identifiers import (
    RESERVED_WORDS,
    check_identifier,
    identifier_problem,
    quote_backtick,
    quote_double,
)
from etl.warehouse.ddl import Dialect, ident


def _doc(name: str = "readings", field: str = "temperature") -> dict[str, object]:
    return {
        "name": name,
        "partition_key": "device_id",
        "fields": [
            {"name": "reading_id", "type": "string", "role": "id"},
            {"name": "device_id", "type": "string"},
            {"name": "observed_at", "type": "timestamp", "role": "event_time"},
            {"name": field, "type": "float", "role": "feature"},
        ],
    }


@pytest.mark.parametrize("name", ["readings", "_private", "t2", "hour", "year", "a" * 63])
def test_lower_case_identifiers_that_no_engine_reserves_pass(name: str) -> None:
    assert identifier_problem(name) is None
    assert check_identifier(name, "x") == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Temperature", "not a lower-case identifier"),
        ("2fast", "not a lower-case identifier"),
        ("with-dash", "e.g. 'with_dash'"),
        ("white space", "e.g. 'white_space'"),
        ("", "non-empty string"),
        ("a" * 64, "64 characters; at most 63"),
        ("select", "SQL reserved word"),
        ("date", "SQL reserved word"),  # Hive DDL (Athena) reserves it
        ("user", "SQL reserved word"),  # PostgreSQL and Redshift
        ("qualify", "SQL reserved word"),  # DuckDB
        ("unnest", "SQL reserved word"),  # Trino (Athena DML)
    ],
)
def test_names_the_engines_would_refuse_are_explained(name: str, says: str) -> None:
    problem = identifier_problem(name)
    assert problem is not None and says in problem


def test_the_reserved_list_covers_every_engine_and_only_lower_case_words() -> None:
    for word in ("select", "from", "table", "partition", "timestamp", "values", "pivot", "limit"):
        assert word in RESERVED_WORDS
    assert all(w == w.lower() and w.isidentifier() for w in RESERVED_WORDS)


def test_a_contract_with_a_reserved_field_name_fails_at_load_naming_the_field() -> None:
    # GIVEN a contract whose feature is called "timestamp"
    # WHEN it is parsed  THEN the error names where, the name, and a way out
    with pytest.raises(ContractError) as err:
        parse_contract(_doc(field="timestamp"), "c.toml")
    assert str(err.value) == (
        "c.toml: fields[3].name: 'timestamp' is an SQL reserved word in PostgreSQL, Redshift,"
        " Athena or DuckDB; choose another name, e.g. 'timestamp_value'"
    )


def test_a_contract_name_follows_the_same_rule() -> None:
    with pytest.raises(ContractError, match=r"c\.toml: 'name': 'Sensor-Readings' is not a lower"):
        parse_contract(_doc(name="Sensor-Readings"), "c.toml")
    with pytest.raises(ContractError, match=r"'name': 'order' is an SQL reserved word"):
        parse_contract(_doc(name="order"), "c.toml")


@pytest.mark.parametrize(
    ("name", "double", "backtick"),
    [
        ("plain", '"plain"', "`plain`"),
        ('we"ird', '"we""ird"', '`we"ird`'),
        ("back`tick", '"back`tick"', "`back``tick`"),
        ("select", '"select"', "`select`"),
    ],
)
def test_quoting_escapes_the_quote_character(name: str, double: str, backtick: str) -> None:
    assert quote_double(name) == double
    assert quote_backtick(name) == backtick
    # psycopg's sql.Identifier (PostgreSQL) and our Redshift quoting agree
    assert ident(name, Dialect.POSTGRES) == ident(name, Dialect.REDSHIFT) == double


def test_a_nul_byte_never_reaches_sql() -> None:
    with pytest.raises(ContractError, match="NUL"):
        quote_double("a\x00b")
    with pytest.raises(ContractError, match="NUL"):
        quote_backtick("a\x00b")
