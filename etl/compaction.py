"""Compaction of closed lake hours, and the one rule every lake reader uses to pick its objects.

Consumers flush per shard every minute or so, so an hour of a 4-shard stream is a few hundred small
Parquet objects; Athena (and DuckDB) pay per object. A compaction rewrites one closed hour's small
objects into a few large ones, as a commit protocol on plain S3 (no rename, no multi-object swap):

1. read the hour's *visible* small objects (see below) and write ``compacted-<gen>-<n>.parquet``
   into the same hour folder; ``gen`` is a hash of the superseded keys, so a rerun after a crash
   rewrites the very same objects;
2. commit: put the compaction manifest
   ``<manifests>/<table>/_compacted/event_date=D/event_hour=H/<gen>.json`` (state ``committed``,
   the compacted ``objects`` and the small keys it ``supersedes``);
3. later (``grace`` after the commit, so a reader that listed the old set can finish), delete the
   superseded small objects, and compacted objects no committed manifest names (a crash between 1
   and 2 leaves those behind).

**The visibility rule** (:func:`visible_keys`): in a table's listing, a ``compacted-*`` object is
visible only if a committed compaction manifest names it; any other object is visible unless a
committed manifest supersedes it. A crash at any step therefore shows the old set or the new one,
never both and never neither. Readers list the objects *first* and read the manifests *second*
(compacted keys come from the manifests), so a compaction committing in between cannot hide both.

A consumer that replays an uncheckpointed range after the hour was compacted rewrites a small
object under the same key (keys come from the sequence range) with the same rows: it stays
superseded and invisible, and the next run deletes it again. A *late* flush into a compacted hour
has a new key: it is visible, and the next run compacts it into another generation.

The compaction manifest has the flush manifest's fields (``table``, ``shard_id`` ``_compacted``,
``state``, ``objects``, ``rows``), so the warehouse loader loads it as one more unit of work; it
keys rows on (shard, sequence number), so rows loaded from the small objects are not loaded twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError

from etl.contract import PARTITION_DATE, PARTITION_HOUR, SEQUENCE_NUMBER, Contract
from etl.exceptions import CompactionError
from etl.lake import LakeObject, encode_parquet
from etl.settings import Settings

log = logging.getLogger(__name__)

COMPACTED_SHARD = "_compacted"
COMPACTED_STEM = "compacted-"


@dataclass
class CompactionManifest:
    """The commit record of one compaction of one hour (flush-manifest compatible)."""

    table: str
    event_date: str
    event_hour: str
    generation: str
    objects: list[LakeObject] = field(default_factory=list)
    supersedes: list[str] = field(default_factory=list)
    rows: int = 0
    written_at: str = ""
    state: str = "committed"
    shard_id: str = COMPACTED_SHARD
    first_sequence: str = "0"
    last_sequence: str = "0"
    kind: str = "compaction"
    version: int = 1

    def to_json(self) -> str:
        # One line: Athena's JSON SerDe reads one document per line (the _compactions table).
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> CompactionManifest:
        doc = json.loads(text)
        doc["objects"] = [LakeObject(**o) for o in doc.get("objects", [])]
        return cls(**doc)


@dataclass(frozen=True, slots=True)
class TableLocation:
    """Where one lake table's objects and manifests live."""

    bucket: str
    table: str
    lake_prefix: str = "lake"
    manifest_prefix: str = "manifests"

    @classmethod
    def of(cls, settings: Settings, contract: Contract) -> TableLocation:
        """Where ``contract``'s table lives in the stack ``settings`` describe."""
        return cls(
            settings.require("lake_bucket"),
            contract.name,
            settings.lake_prefix,
            settings.manifest_prefix,
        )

    @property
    def objects_prefix(self) -> str:
        return f"{self.lake_prefix}/{self.table}/"

    @property
    def compactions_prefix(self) -> str:
        return f"{self.manifest_prefix}/{self.table}/{COMPACTED_SHARD}/"

    def hour_prefix(self, day: str, hour: str) -> str:
        return f"{self.objects_prefix}{PARTITION_DATE}={day}/{PARTITION_HOUR}={hour}/"

    def manifest_key(self, day: str, hour: str, generation: str) -> str:
        return (
            f"{self.compactions_prefix}{PARTITION_DATE}={day}/{PARTITION_HOUR}={hour}/"
            f"{generation}.json"
        )


@dataclass(frozen=True, slots=True)
class Listed:
    key: str
    size: int
    modified: datetime


def hour_of(key: str) -> tuple[str, str] | None:
    """``(event_date, event_hour)`` of a lake object key, or None outside the hive layout."""
    parts = dict(p.split("=", 1) for p in key.split("/") if "=" in p)
    if PARTITION_DATE in parts and PARTITION_HOUR in parts:
        return parts[PARTITION_DATE], parts[PARTITION_HOUR]
    return None


def is_compacted(key: str) -> bool:
    return key.rsplit("/", 1)[-1].startswith(COMPACTED_STEM)


def list_objects(s3: Any, bucket: str, prefix: str) -> list[Listed]:
    out: list[Listed] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                out.append(Listed(item["Key"], int(item["Size"]), item["LastModified"]))
    except (ClientError, BotoCoreError) as exc:
        raise CompactionError(f"listing s3://{bucket}/{prefix} failed: {exc}") from None
    return out


def read_compactions(
    s3: Any, loc: TableLocation, hour: tuple[str, str] | None = None
) -> list[CompactionManifest]:
    """Every committed compaction manifest of the table (or of one hour)."""
    found: list[CompactionManifest] = []
    prefix = loc.compactions_prefix
    if hour is not None:
        prefix = loc.manifest_key(hour[0], hour[1], "").removesuffix(".json")
    for item in list_objects(s3, loc.bucket, prefix):
        if not item.key.endswith(".json"):
            continue
        try:
            body = s3.get_object(Bucket=loc.bucket, Key=item.key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        except (ClientError, BotoCoreError) as exc:
            raise CompactionError(f"reading s3://{loc.bucket}/{item.key} failed: {exc}") from None
        try:
            manifest = CompactionManifest.from_json(body)
        except (ValueError, TypeError, KeyError) as exc:
            raise CompactionError(
                f"compaction manifest s3://{loc.bucket}/{item.key} is malformed ({exc});"
                " delete it (its hour then shows its small objects again)"
            ) from None
        if manifest.state == "committed":
            found.append(manifest)
    return found


def visible_keys(listed: Iterable[str], compactions: Iterable[CompactionManifest]) -> list[str]:
    """The visibility rule: which object keys a reader reads (see the module docstring).

    ``listed`` must be listed *before* ``compactions`` were read.
    """
    named: set[str] = set()
    superseded: set[str] = set()
    for m in compactions:
        named.update(o.key for o in m.objects)
        superseded.update(m.supersedes)
    small = {k for k in listed if k.endswith(".parquet") and not is_compacted(k)}
    return sorted((small - superseded) | named)


def resolve_visible(
    s3: Any, loc: TableLocation, hours: set[tuple[str, str]] | None = None
) -> list[str]:
    """The table's visible object keys (optionally only the given hours): list, then manifests."""
    listed = [i.key for i in list_objects(s3, loc.bucket, loc.objects_prefix)]
    keys = visible_keys(listed, read_compactions(s3, loc))
    if hours is None:
        return keys
    return [k for k in keys if hour_of(k) in hours]


#: The lake's partition columns as the readers type them (strings, as in Glue).
HOUR_PARTITIONS = pa.schema([(PARTITION_DATE, pa.string()), (PARTITION_HOUR, pa.string())])


def lake_dataset(
    s3: Any,
    filesystem: pafs.FileSystem,
    loc: TableLocation,
    *,
    hours: set[tuple[str, str]] | None = None,
    schema: pa.Schema | None = None,
) -> ds.Dataset:
    """**The** lake reader: the table's visible objects (optionally only ``hours``) as a lazy
    pyarrow dataset with ``event_date``/``event_hour`` string columns from the key. DuckDB
    (``etl.query``), the retrain window and ``baseline build --from lake`` all read through it.

    ``schema`` (the contract's, with partitions) types the columns and makes an empty table
    readable; without it an empty table raises ``FileNotFoundError``.
    """
    keys = resolve_visible(s3, loc, hours)
    if not keys:
        if schema is None:
            raise FileNotFoundError(f"s3://{loc.bucket}/{loc.objects_prefix} has no objects")
        return ds.dataset(schema.empty_table())
    return ds.dataset(
        [f"{loc.bucket}/{k}" for k in keys],
        filesystem=filesystem,
        format="parquet",
        partitioning=ds.partitioning(HOUR_PARTITIONS, flavor="hive"),
        partition_base_dir=f"{loc.bucket}/{loc.objects_prefix}".rstrip("/"),
        schema=schema,
    )


def generation_of(superseded: Iterable[str]) -> str:
    """Deterministic: the same small set always compacts to the same keys."""
    digest = hashlib.sha256("\n".join(sorted(superseded)).encode()).hexdigest()
    return digest[:16]


@dataclass
class CompactionReport:
    hours: list[str] = field(default_factory=list)
    objects_in: int = 0
    objects_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    rows: int = 0
    deleted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Objects of one hour read at a time while compacting.
READERS = 8

#: Step names passed to ``on_step`` (tests inject a crash at each).
STEPS = ("read", "write_object", "commit", "delete")


@dataclass(frozen=True, slots=True)
class CompactionOptions:
    """How a :class:`Compactor` compacts: object size, smallest hour worth it, delete delay."""

    target_bytes: int = 128 * 1024 * 1024
    #: An hour with fewer visible small objects than this is left alone.
    min_objects: int = 2
    #: Superseded objects are deleted this long after their compaction committed.
    grace: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.target_bytes <= 0:
            raise CompactionError(f"target size {self.target_bytes} B must be > 0; e.g. 128 MB")


class Compactor:
    """Compacts one table's closed hours; clients are injected, the clock too."""

    def __init__(
        self,
        s3: Any,
        contract: Contract,
        loc: TableLocation,
        options: CompactionOptions = CompactionOptions(),
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_step: Callable[[str], None] = lambda step: None,
    ) -> None:
        self.s3 = s3
        self.contract = contract
        self.loc = loc
        self.options = options
        self._clock = clock
        self._on_step = on_step
        self._schema = contract.arrow_schema(with_metadata=True)

    def run(self, older_than: timedelta) -> CompactionReport:
        """Compact every hour that closed more than ``older_than`` ago, then clean up."""
        report = CompactionReport()
        now = self._clock()
        listed = list_objects(self.s3, self.loc.bucket, self.loc.objects_prefix)
        compactions = read_compactions(self.s3, self.loc)
        visible = set(visible_keys((i.key for i in listed), compactions))
        by_hour: dict[tuple[str, str], list[Listed]] = defaultdict(list)
        for item in listed:
            where = hour_of(item.key)
            if where and item.key in visible and not is_compacted(item.key):
                by_hour[where].append(item)
        for (day, hh), small in sorted(by_hour.items()):
            closes = datetime.fromisoformat(f"{day}T{hh}:00:00+00:00") + timedelta(hours=1)
            if closes + older_than > now or len(small) < self.options.min_objects:
                continue
            done = self.compact_hour(day, hh, small, report)
            if done is not None:
                compactions.append(done)
        report.deleted = self.clean(listed, compactions, self._clock())
        return report

    def compact_hour(
        self, day: str, hour: str, small: list[Listed], report: CompactionReport
    ) -> CompactionManifest | None:
        """Compact one hour; None when a rival compaction of it committed first."""
        keys = sorted(i.key for i in small)
        gen = generation_of(keys)
        self._on_step("read")
        with ThreadPoolExecutor(max_workers=READERS) as pool:  # S3 GETs: latency, not CPU
            tables = list(pool.map(self._read, keys))
        if any(t is None for t in tables):
            log.warning(
                "%sT%s: an object vanished while compacting (compacted meanwhile)", day, hour
            )
            return None
        rows = pa.concat_tables([t for t in tables if t is not None]).sort_by(
            [(self.contract.event_time_field.name, "ascending"), (SEQUENCE_NUMBER, "ascending")]
        )
        in_bytes = sum(i.size for i in small)
        parts = max(1, math.ceil(in_bytes / self.options.target_bytes))
        per_part = math.ceil(rows.num_rows / parts) if rows.num_rows else 0
        manifest = CompactionManifest(
            self.loc.table, day, hour, gen, supersedes=keys, rows=rows.num_rows
        )
        for n in range(parts):
            chunk = rows.slice(n * per_part, per_part) if per_part else rows
            body = encode_parquet(chunk, unique_columns=(self.contract.id_field.name,))
            key = f"{self.loc.hour_prefix(day, hour)}{COMPACTED_STEM}{gen}-{n:04d}.parquet"
            self._put(key, body, "application/vnd.apache.parquet")
            manifest.objects.append(LakeObject(key, chunk.num_rows, day, hour, len(body)))
            self._on_step("write_object")
        manifest.written_at = self._clock().isoformat()
        self._on_step("commit")
        rival = [
            m.generation
            for m in read_compactions(self.s3, self.loc, (day, hour))
            if m.generation != gen and set(m.supersedes) & set(keys)
        ]
        if rival:
            # Another compaction of this hour committed meanwhile: committing too would show
            # the overlapping rows twice. Ours are orphans now; a later clean-up deletes them.
            log.warning("%sT%s: compaction %s committed meanwhile; skipped", day, hour, rival[0])
            return None
        self._put(
            self.loc.manifest_key(day, hour, gen), manifest.to_json().encode(), "application/json"
        )
        report.hours.append(f"{day}T{hour}")
        report.objects_in += len(keys)
        report.objects_out += len(manifest.objects)
        report.bytes_in += in_bytes
        report.bytes_out += sum(o.bytes for o in manifest.objects)
        report.rows += rows.num_rows
        log.info("compacted %sT%s: %d objects -> %d", day, hour, len(keys), len(manifest.objects))
        return manifest

    def clean(
        self, listed: list[Listed], compactions: list[CompactionManifest], now: datetime
    ) -> int:
        """Delete superseded small objects and orphaned compacted ones, ``grace`` after commit."""
        named = {o.key for m in compactions for o in m.objects}
        ripe: set[str] = set()
        for m in compactions:
            if m.written_at and datetime.fromisoformat(m.written_at) + self.options.grace <= now:
                ripe.update(m.supersedes)
        doomed = [
            i.key
            for i in listed
            if (i.key in ripe and not is_compacted(i.key))
            or (
                is_compacted(i.key)
                and i.key not in named
                and i.modified + self.options.grace <= now
            )
        ]
        for start in range(0, len(doomed), 1000):
            self._on_step("delete")
            batch = [{"Key": k} for k in doomed[start : start + 1000]]
            try:
                self.s3.delete_objects(Bucket=self.loc.bucket, Delete={"Objects": batch})
            except (ClientError, BotoCoreError) as exc:
                raise CompactionError(f"deleting superseded objects failed: {exc}") from None
        return len(doomed)

    def _read(self, key: str) -> pa.Table | None:
        """The object's rows, or None when it is gone (another compaction's clean-up)."""
        from etl.conform import conform

        try:
            body = self.s3.get_object(Bucket=self.loc.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        except (ClientError, BotoCoreError) as exc:
            raise CompactionError(f"reading s3://{self.loc.bucket}/{key} failed: {exc}") from None
        table = pq.read_table(io.BytesIO(body))
        table = table.drop_columns(
            [c for c in (PARTITION_DATE, PARTITION_HOUR) if c in table.column_names]
        )
        return conform(table, self._schema, key)

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.s3.put_object(Bucket=self.loc.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise CompactionError(f"writing s3://{self.loc.bucket}/{key} failed: {exc}") from None


@dataclass(frozen=True, slots=True)
class CompactionRequest:
    """The scheduled rule's input (``{"older_than_s": 7200, "target_mb": 128, "grace_s": 900}``)."""

    older_than: timedelta = timedelta(hours=2)
    target_bytes: int = 128 * 1024 * 1024
    grace: timedelta = timedelta(minutes=15)

    @property
    def options(self) -> CompactionOptions:
        return CompactionOptions(target_bytes=self.target_bytes, grace=self.grace)

    @classmethod
    def from_event(cls, event: Any) -> CompactionRequest:
        doc = event if isinstance(event, dict) else {}
        values: dict[str, float] = {}
        for key, default in (("older_than_s", 7200.0), ("target_mb", 128.0), ("grace_s", 900.0)):
            raw = doc.get(key, default)
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                raise CompactionError(
                    f"compaction event {key}={raw!r}: expected a number >= 0, e.g."
                    f" {default:g}; fix the rule's Input"
                )
            values[key] = float(raw)
        if values["target_mb"] <= 0:
            raise CompactionError("compaction event target_mb=0: expected > 0, e.g. 128")
        return cls(
            timedelta(seconds=values["older_than_s"]),
            int(values["target_mb"] * 1024 * 1024),
            timedelta(seconds=values["grace_s"]),
        )


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the scheduled compaction (template: CompactionFunction)."""
    from etl.aws import AwsClients
    from etl.contract import load_contract
    from etl.settings import load_settings

    request = CompactionRequest.from_event(event)
    settings = load_settings()
    contract = load_contract(settings.contract_path)
    clients = AwsClients.from_settings(settings)
    compactor = Compactor(
        clients.client("s3"),
        contract,
        TableLocation.of(settings, contract),
        request.options,
    )
    report = compactor.run(request.older_than)
    log.info("compaction report %s", json.dumps(report.to_dict(), sort_keys=True))
    return report.to_dict()
