"""``driftline local up --contract PATH``: the stack is built for that contract and remembers it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from etl.aws import AwsClients
from etl.contract import load_contract
from etl.exceptions import EmulatorError
from etl.export import ExportTable
from infra import local
from infra.context import resolve_settings
from tests.contracts import PARCEL_SCANS

#: The tables `driftline lake export` fills (the template creates them).
EXPORTED = [str(t) for t in ExportTable]

pytestmark = pytest.mark.functional


def test_local_up_creates_the_contracts_table_and_later_commands_use_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # GIVEN a local stack started with the parcel-scans contract
    up = local.up(
        directory=state,
        contract_path=str(PARCEL_SCANS),
        parts=local.Parts(warehouse=False, services=False),
    )
    try:
        clients = AwsClients(endpoint_url=up.state.endpoint)
        db = up.state.outputs["GlueDatabase"]
        # THEN its Glue database holds the contract's table, and no other contract's
        tables = clients.client("glue").get_tables(DatabaseName=db)["TableList"]
        # the contract's lake table, next to the stack's shared dead-letter and compaction tables
        assert sorted(t["Name"] for t in tables) == sorted(
            [*EXPORTED, "compactions", "dead_letters", "parcel_scans"]
        )
        [lake_table] = [t for t in tables if t["Name"] == "parcel_scans"]
        assert lake_table["Parameters"]["driftline_contract_hash"] == (
            load_contract(PARCEL_SCANS).hash
        )
        # AND a command against the stack, given no contract, resolves this one
        env = {"DRIFTLINE_STATE_DIR": str(state), "DRIFTLINE_CONFIG": str(tmp_path / "none.toml")}
        (tmp_path / "none.toml").write_text("")
        settings, _ = resolve_settings(env=env, args=argparse.Namespace(contract=None))
        assert settings.contract_path == str(PARCEL_SCANS.resolve())
        # AND asking the running stack for another contract is refused, naming the fix
        other = tmp_path / "other.toml"
        other.write_text(PARCEL_SCANS.read_text().replace("parcel_scans", "parcel_scans_v2"))
        with pytest.raises(EmulatorError, match="run `driftline local down` first"):
            local.up(directory=state, contract_path=str(other))
    finally:
        local.down(directory=state)
