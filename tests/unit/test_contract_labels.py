"""The contract's [labels] table: inline by default (unchanged contracts), late on the same stream
or a second one, every mistake named."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

import pytest

from etl.contract import load_contract, parse_contract
from etl.contract_labels import LabelArrival
from etl.exceptions import ContractError


def card_doc() -> dict[str, Any]:
    text = resources.files("etl.contracts").joinpath("card_transactions.toml").read_text()
    doc = tomllib.loads(text)
    doc["fields"].append(
        {
            "name": "record_kind",
            "type": "string",
            "role": "attribute",
            "required": False,
            "nullable": True,
        }
    )
    doc["fields"].append(
        {
            "name": "labelled_at",
            "type": "timestamp",
            "role": "attribute",
            "required": False,
            "nullable": True,
        }
    )
    return doc


LATE = {"arrival": "late", "kind_field": "record_kind", "time_field": "labelled_at"}


def test_a_contract_without_labels_is_inline_and_keeps_its_hash() -> None:
    c = load_contract()
    assert c.labels.arrival is LabelArrival.INLINE and not c.labels.late
    assert "labels" not in c.to_dict()
    # the card contract's hash is what models and baselines recorded before [labels] existed
    assert parse_contract(c.to_dict()).hash == c.hash


def test_late_labels_on_the_same_stream_parse_and_round_trip() -> None:
    doc = card_doc()
    doc["labels"] = {**LATE, "horizon_s": 3600}
    c = parse_contract(doc)
    assert c.labels.late and c.labels.kind_field == "record_kind"
    assert (c.labels.label_kind, c.labels.time_field, c.labels.horizon_s) == (
        "label",
        "labelled_at",
        3600.0,
    )
    again = parse_contract(c.to_dict())
    assert again.labels == c.labels and again.hash == c.hash
    assert c.hash != parse_contract(card_doc()).hash  # declaring late labels is a new contract


def test_late_labels_on_a_second_stream() -> None:
    doc = card_doc()
    doc["labels"] = {"arrival": "late", "stream": "card-labels"}
    assert parse_contract(doc).labels.stream == "card-labels"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"arrival": "sometimes"}, "arrival: got 'sometimes'"),
        ({"arrival": "late"}, "exactly one of the two"),
        ({**LATE, "stream": "s"}, "exactly one of the two"),
        ({"kind_field": "record_kind"}, r"only apply to arrival = \"late\""),
        ({**LATE, "horizon_s": 0}, "horizon_s: expected seconds > 0"),
        ({**LATE, "colour": "red"}, "unknown keys"),
        ({**LATE, "kind_field": "nope"}, "'nope' is not a field"),
        ({**LATE, "kind_field": "device"}, 'role "attribute"'),
        ({**LATE, "time_field": "record_kind"}, "must be a timestamp field"),
    ],
)
def test_mistakes_are_named(labels: dict[str, Any], message: str) -> None:
    doc = card_doc()
    doc["labels"] = labels
    with pytest.raises(ContractError, match=message):
        parse_contract(doc)


def test_a_late_label_must_be_optional_on_prediction_records() -> None:
    doc = card_doc()
    doc["labels"] = LATE
    label = next(f for f in doc["fields"] if f["role"] == "label")
    label["required"], label["nullable"] = True, False
    with pytest.raises(ContractError, match="required = false, nullable = true"):
        parse_contract(doc)
