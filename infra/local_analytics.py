"""Local handlers for the analytics resources moto's CloudFormation ignores.

moto's CloudFormation skips ``AWS::Athena::WorkGroup`` and ``AWS::Glue::Table`` (it logs "No Moto
CloudFormation support"), but its Athena and Glue APIs keep both: these handlers create them from
the template's resolved properties, so the local stack has the workgroup (with its enforced result
location) and the dead-letter and compaction tables (with their projection parameters). moto runs
no SQL: locally ``driftline lake query`` runs the same shared SQL on DuckDB.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from etl.aws import error_code
from infra.local_handler import Handler


class AthenaWorkGroup(Handler):
    resource_type = "AWS::Athena::WorkGroup"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        return str(props["Name"])

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        athena = self.clients.client("athena")
        config = dict(props.get("WorkGroupConfiguration", {}))
        if "BytesScannedCutoffPerQuery" in config:
            config["BytesScannedCutoffPerQuery"] = int(config["BytesScannedCutoffPerQuery"])
        if self.exists(props["Name"], props):
            return
        athena.create_work_group(
            Name=props["Name"], Configuration=config, Description=props.get("Description", "")
        )

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        try:
            found = self.clients.client("athena").get_work_group(WorkGroup=physical_id)
        except ClientError as exc:
            if error_code(exc) == "InvalidRequestException":
                return False
            raise
        return bool(found.get("WorkGroup"))

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        self.clients.client("athena").delete_work_group(
            WorkGroup=physical_id, RecursiveDeleteOption=True
        )


class GlueTable(Handler):
    resource_type = "AWS::Glue::Table"

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        return str(props["TableInput"]["Name"])

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        glue = self.clients.client("glue")
        try:
            glue.create_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])
        except ClientError as exc:
            if error_code(exc) != "AlreadyExistsException":
                raise
            glue.update_table(DatabaseName=props["DatabaseName"], TableInput=props["TableInput"])

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        try:
            self.clients.client("glue").get_table(
                DatabaseName=props["DatabaseName"], Name=physical_id
            )
        except ClientError as exc:
            if error_code(exc) == "EntityNotFoundException":
                return False
            raise
        return True

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        try:
            self.clients.client("glue").delete_table(
                DatabaseName=props["DatabaseName"], Name=physical_id
            )
        except ClientError as exc:
            if error_code(exc) != "EntityNotFoundException":
                raise


ANALYTICS_HANDLERS: dict[str, type[Handler]] = {
    h.resource_type: h for h in (AthenaWorkGroup, GlueTable)
}
