"""The data contract: which fields a record has, their types, and what role each plays.

A contract is a TOML file validated at load. Everything downstream derives from it: record
validation, the lake's Arrow/Glue schema, warehouse DDL, the drift features, the model's inputs,
label and task (``binary_classification`` or ``regression``), and the synthetic generator (its
optional ``[generator]`` table, see ``etl/generator.py``). Two examples ship in ``etl/contracts/``.

>>> from etl.contract import load_contract
>>> c = load_contract()                     # the shipped card-transactions example
>>> c.name, c.task.value, len(c.features)
('card_transactions', 'binary_classification', 6)
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa

from etl.contract_labels import LabelSpec, check_labels, parse_labels
from etl.exceptions import ContractError
from etl.identifiers import check_identifier

#: Columns every lake row carries besides the contract's own fields.
SHARD_ID = "shard_id"
SEQUENCE_NUMBER = "sequence_number"
ARRIVAL_TIME = "approximate_arrival_time"
INGEST_TIME = "ingest_time"
#: Partition columns of the lake (hour of the event, UTC). Named so they never clash with features.
PARTITION_DATE = "event_date"
PARTITION_HOUR = "event_hour"
METADATA_COLUMNS = (SHARD_ID, SEQUENCE_NUMBER, ARRIVAL_TIME, INGEST_TIME)
PARTITION_COLUMNS = (PARTITION_DATE, PARTITION_HOUR)
#: The warehouse's own column (when a row was merged): no field may take its name either.
WAREHOUSE_LOADED_AT = "loaded_at"

DEFAULT_CONTRACT = "card_transactions.toml"


class FieldType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TIMESTAMP = "timestamp"


class Task(StrEnum):
    """What the model learns from the label: the training estimator and its metrics follow it."""

    BINARY_CLASSIFICATION = "binary_classification"
    REGRESSION = "regression"


#: Label types each task accepts (a binary label may be a bool or a 0/1 int).
_TASK_LABEL_TYPES: dict[Task, tuple[FieldType, ...]] = {
    Task.BINARY_CLASSIFICATION: (FieldType.BOOL, FieldType.INT),
    Task.REGRESSION: (FieldType.INT, FieldType.FLOAT),
}
_DEFAULT_TASK: dict[FieldType, Task] = {
    FieldType.BOOL: Task.BINARY_CLASSIFICATION,
    FieldType.INT: Task.REGRESSION,
    FieldType.FLOAT: Task.REGRESSION,
}


class Role(StrEnum):
    ID = "id"
    EVENT_TIME = "event_time"
    FEATURE = "feature"
    LABEL = "label"
    ATTRIBUTE = "attribute"


_ARROW_TYPES: dict[FieldType, pa.DataType] = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int64(),
    FieldType.FLOAT: pa.float64(),
    FieldType.BOOL: pa.bool_(),
    FieldType.TIMESTAMP: pa.timestamp("us", tz="UTC"),
}

_GLUE_TYPES: dict[FieldType, str] = {
    FieldType.STRING: "string",
    FieldType.INT: "bigint",
    FieldType.FLOAT: "double",
    FieldType.BOOL: "boolean",
    FieldType.TIMESTAMP: "timestamp",
}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the contract."""

    name: str
    type: FieldType
    role: Role
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]

    @property
    def glue_type(self) -> str:
        return _GLUE_TYPES[self.type]

    @property
    def is_numeric(self) -> bool:
        return self.type in (FieldType.INT, FieldType.FLOAT)

    @property
    def is_categorical(self) -> bool:
        return self.type in (FieldType.STRING, FieldType.BOOL)


@dataclass(frozen=True, slots=True)
class Contract:
    """A validated data contract."""

    name: str
    version: int
    partition_key: str
    fields: tuple[Field, ...]
    max_record_bytes: int = 64 * 1024
    #: The model task; ``None`` exactly when no field is the label (no model to train).
    task: Task | None = None
    source: str = field(default="", compare=False)
    #: The ``[generator]`` table (synthetic-data parameters), validated by ``etl.synthetic``.
    generator: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: How the label arrives (``[labels]``, ``etl/contract_labels.py``): inline unless declared.
    labels: LabelSpec = field(default_factory=LabelSpec)

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ContractError(f"contract {self.name!r}: duplicate field names {dupes}")
        reserved = set(METADATA_COLUMNS) | set(PARTITION_COLUMNS) | {WAREHOUSE_LOADED_AT}
        clash = sorted(set(names) & reserved)
        if clash:
            raise ContractError(
                f"contract {self.name!r}: fields {clash} clash with lake columns"
                f" {sorted(reserved)};"
                " rename them"
            )
        for role in (Role.ID, Role.EVENT_TIME):
            found = [f for f in self.fields if f.role is role]
            if len(found) != 1:
                raise ContractError(
                    f"contract {self.name!r}: expected exactly one field with role {role.value!r},"
                    f" found {len(found)}"
                )
            if found[0].nullable or not found[0].required:
                raise ContractError(
                    f"contract {self.name!r}: the {role.value} field {found[0].name!r} must be"
                    " required and not nullable"
                )
        if self.event_time_field.type is not FieldType.TIMESTAMP:
            raise ContractError(
                f"contract {self.name!r}: event_time field {self.event_time_field.name!r} must have"
                f" type 'timestamp', got {self.event_time_field.type.value!r}"
            )
        if self.partition_key not in names:
            raise ContractError(
                f"contract {self.name!r}: partition_key {self.partition_key!r} is not a field;"
                f" choose one of {names}"
            )
        self._check_label()
        check_labels(self.labels, self)
        if self.max_record_bytes <= 0 or self.max_record_bytes > 1024 * 1024:
            raise ContractError(
                f"contract {self.name!r}: max_record_bytes={self.max_record_bytes} must be in"
                " 1..1048576 (Kinesis' record limit)"
            )

    def _check_label(self) -> None:
        labels = [f for f in self.fields if f.role is Role.LABEL]
        if len(labels) > 1:
            raise ContractError(
                f"contract {self.name!r}: at most one field may have role 'label', found"
                f" {[f.name for f in labels]}"
            )
        if not labels:
            if self.task is not None:
                raise ContractError(
                    f"contract {self.name!r}: task={self.task.value!r} but no field has role"
                    " 'label'; mark the target field role = \"label\" or remove task"
                )
            return
        label = labels[0]
        if self.task is None:
            raise ContractError(
                f"contract {self.name!r}: label {label.name!r} ({label.type.value}) needs a task;"
                f" set task to one of {[t.value for t in Task]}"
            )
        if label.type not in _TASK_LABEL_TYPES[self.task]:
            allowed = [t.value for t in _TASK_LABEL_TYPES[self.task]]
            raise ContractError(
                f"contract {self.name!r}: task={self.task.value!r} needs a label of type"
                f" {allowed}, but {label.name!r} is {label.type.value!r}; change task or the"
                " label's type"
            )

    # -- views -----------------------------------------------------------------------------
    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise ContractError(f"contract {self.name!r} has no field {name!r}")

    @property
    def id_field(self) -> Field:
        return next(f for f in self.fields if f.role is Role.ID)

    @property
    def event_time_field(self) -> Field:
        return next(f for f in self.fields if f.role is Role.EVENT_TIME)

    @property
    def features(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.role is Role.FEATURE)

    @property
    def label(self) -> Field | None:
        return next((f for f in self.fields if f.role is Role.LABEL), None)

    def arrow_schema(
        self, *, with_metadata: bool = True, with_partitions: bool = False
    ) -> pa.Schema:
        """The Arrow schema of a lake row (contract fields, then metadata, then partitions)."""
        cols = [
            pa.field(f.name, f.arrow_type, nullable=f.nullable or not f.required)
            for f in self.fields
        ]
        if with_metadata:
            cols += [
                pa.field(SHARD_ID, pa.string(), nullable=False),
                pa.field(SEQUENCE_NUMBER, pa.string(), nullable=False),
                pa.field(ARRIVAL_TIME, pa.timestamp("us", tz="UTC")),
                pa.field(INGEST_TIME, pa.timestamp("us", tz="UTC"), nullable=False),
            ]
        if with_partitions:
            cols += [pa.field(PARTITION_DATE, pa.string()), pa.field(PARTITION_HOUR, pa.string())]
        return pa.schema(cols)

    def glue_columns(self) -> dict[str, str]:
        """Glue column types of a lake row, partitions excluded."""
        cols = {f.name: f.glue_type for f in self.fields}
        cols.update(
            {
                SHARD_ID: "string",
                SEQUENCE_NUMBER: "string",
                ARRIVAL_TIME: "timestamp",
                INGEST_TIME: "timestamp",
            }
        )
        return cols

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "partition_key": self.partition_key,
            "max_record_bytes": self.max_record_bytes,
            **({"task": self.task.value} if self.task is not None else {}),
            **({"labels": self.labels.to_dict()} if self.labels.late else {}),
            "fields": [
                {
                    k: v
                    for k, v in {
                        "name": f.name,
                        "type": f.type.value,
                        "role": f.role.value,
                        "required": f.required,
                        "nullable": f.nullable,
                        "min": f.min,
                        "max": f.max,
                        "allowed": list(f.allowed) if f.allowed is not None else None,
                    }.items()
                    if v is not None
                }
                for f in self.fields
            ],
        }

    @property
    def hash(self) -> str:
        """sha256 of the contract's canonical JSON: baselines and models record it."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def _parse_field(raw: Mapping[str, Any], where: str) -> Field:
    if not isinstance(raw, Mapping):
        raise ContractError(f"{where}: expected a table, got {type(raw).__name__}")
    known = {"name", "type", "role", "required", "nullable", "min", "max", "allowed"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; allowed are {sorted(known)}")
    name = check_identifier(raw.get("name"), f"{where}.name")
    where = f"{where} ({name})"
    try:
        ftype = FieldType(str(raw.get("type")))
    except ValueError:
        raise ContractError(
            f"{where}.type: got {raw.get('type')!r}, expected one of {[t.value for t in FieldType]}"
        ) from None
    try:
        role = Role(raw.get("role", "attribute"))
    except ValueError:
        raise ContractError(
            f"{where}.role: got {raw.get('role')!r}, expected one of {[r.value for r in Role]}"
        ) from None
    for key in ("required", "nullable"):
        if key in raw and not isinstance(raw[key], bool):
            raise ContractError(f"{where}.{key}: expected true or false, got {raw[key]!r}")
    bounds: dict[str, float | None] = {}
    for key in ("min", "max"):
        val = raw.get(key)
        if val is not None and (isinstance(val, bool) or not isinstance(val, int | float)):
            raise ContractError(f"{where}.{key}: expected a number, got {val!r}")
        if val is not None and ftype not in (FieldType.INT, FieldType.FLOAT):
            raise ContractError(
                f"{where}.{key}: only numeric fields take bounds, this is {ftype.value}"
            )
        bounds[key] = float(val) if val is not None else None
    allowed = raw.get("allowed")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)
    ):
        raise ContractError(f"{where}.allowed: expected a list of strings, got {allowed!r}")
    if allowed is not None and ftype is not FieldType.STRING:
        raise ContractError(
            f"{where}.allowed: only string fields take allowed values, this is {ftype.value}"
        )
    return Field(
        name=name,
        type=ftype,
        role=role,
        required=bool(raw.get("required", True)),
        nullable=bool(raw.get("nullable", False)),
        min=bounds["min"],
        max=bounds["max"],
        allowed=tuple(allowed) if allowed is not None else None,
    )


def parse_contract(doc: Mapping[str, Any], source: str = "<dict>") -> Contract:
    """Validate a parsed contract document; every error names the key."""
    for key in ("name", "fields", "partition_key"):
        if key not in doc:
            raise ContractError(f"{source}: missing key {key!r}")
    check_identifier(doc["name"], f"{source}: 'name'")
    version = doc.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ContractError(f"{source}: 'version' must be an integer, got {version!r}")
    raw_fields = doc["fields"]
    if not isinstance(raw_fields, list) or not raw_fields:
        raise ContractError(f"{source}: 'fields' must be a non-empty array of tables")
    fields = tuple(_parse_field(f, f"{source}: fields[{i}]") for i, f in enumerate(raw_fields))
    max_bytes = doc.get("max_record_bytes", 64 * 1024)
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool):
        raise ContractError(f"{source}: 'max_record_bytes' must be an integer, got {max_bytes!r}")
    generator = doc.get("generator", {})
    if not isinstance(generator, Mapping):
        raise ContractError(f"{source}: 'generator' must be a table, got {generator!r}")
    return Contract(
        name=doc["name"],
        version=version,
        partition_key=str(doc["partition_key"]),
        fields=fields,
        max_record_bytes=max_bytes,
        task=_parse_task(doc, fields, source),
        source=source,
        generator=dict(generator),
        labels=parse_labels(doc.get("labels"), source),
    )


def _parse_task(doc: Mapping[str, Any], fields: tuple[Field, ...], source: str) -> Task | None:
    """``task`` as written, else the label type's own: a bool is binary, a number regression."""
    raw = doc.get("task")
    if raw is not None:
        try:
            return Task(raw)
        except ValueError:
            raise ContractError(
                f"{source}: 'task' got {raw!r}, expected one of {[t.value for t in Task]}"
            ) from None
    label = next((f for f in fields if f.role is Role.LABEL), None)
    if label is None:
        return None
    task = _DEFAULT_TASK.get(label.type)
    if task is None:
        raise ContractError(
            f"{source}: label {label.name!r} is a {label.type.value}; a label must be a bool"
            " (binary_classification) or a number (regression): change its type, or give it"
            ' role = "attribute" to run without a model'
        )
    return task


def load_contract(path: str | Path | None = None, *, s3_client: Any = None) -> Contract:
    """Load and validate a contract: a TOML file, an ``s3://bucket/key`` object (read with
    ``s3_client``, as the stack's fleet, Lambda and training job do), or, for ``None``, the shipped
    card-transactions example."""
    if path is None:
        text = resources.files("etl.contracts").joinpath(DEFAULT_CONTRACT).read_text()
        source = f"etl/contracts/{DEFAULT_CONTRACT}"
    elif str(path).startswith("s3://"):
        text, source = _read_s3(str(path), s3_client), str(path)
    else:
        p = Path(path)
        if not p.is_file():
            raise ContractError(
                f"contract file {str(p)!r} does not exist; pass a TOML contract path"
            )
        text, source = p.read_text(), str(p)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContractError(f"{source}: not valid TOML: {exc}") from None
    return parse_contract(doc, source)


def _read_s3(uri: str, s3_client: Any) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    from etl.aws import split_s3_uri

    bucket, key = split_s3_uri(uri, ContractError)
    if s3_client is None:
        raise ContractError(f"reading the contract {uri} needs an S3 client; none was given")
    try:
        body: bytes = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as exc:
        raise ContractError(
            f"contract {uri} is unreadable ({exc}); check the object exists and this role may"
            " read it (`driftline deploy --contract PATH` uploads it)"
        ) from None
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise ContractError(f"contract {uri} is not UTF-8 text") from None


def contract_for_settings(settings: Any, clients: Any = None) -> Contract:
    """The contract ``settings.contract_path`` names (local file or ``s3://`` object; ``None``:
    the shipped example). ``clients`` (an :class:`etl.aws.AwsClients`) reads an S3 contract; one
    is made from the settings when none is given."""
    path = settings.contract_path
    s3 = None
    if path is not None and str(path).startswith("s3://"):
        if clients is None:
            from etl.aws import AwsClients

            clients = AwsClients.from_settings(settings)
        s3 = clients.client("s3")
    return load_contract(path, s3_client=s3)
