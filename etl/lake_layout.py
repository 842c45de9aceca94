"""Where a table's objects, dead letters and manifests live in the lake bucket."""

from __future__ import annotations

from dataclasses import dataclass

from etl.contract import PARTITION_DATE, PARTITION_HOUR


@dataclass(frozen=True, slots=True)
class LakeLayout:
    """Where things live in the lake bucket."""

    bucket: str
    table: str
    lake_prefix: str = "lake"
    dead_letter_prefix: str = "dead-letters"
    manifest_prefix: str = "manifests"

    @property
    def table_location(self) -> str:
        return f"s3://{self.bucket}/{self.lake_prefix}/{self.table}/"

    def partition_location(self, event_date: str, event_hour: str) -> str:
        return f"{self.table_location}{PARTITION_DATE}={event_date}/{PARTITION_HOUR}={event_hour}/"
