"""What the pipeline does with a contract (``driftline contract check``), derived from it alone.

The lake's columns and partitioning, the Glue, PostgreSQL and Redshift types, which features the
drift monitor watches and how, the label and the model task, and warnings about choices that work
but are probably not meant.

>>> from etl.contract import load_contract
>>> plan = describe_contract(load_contract())
>>> plan["partitioning"]["columns"]
['event_date', 'event_hour']
"""

from __future__ import annotations

from typing import Any

from etl.contract import PARTITION_DATE, PARTITION_HOUR, Contract, Field, FieldType, Role
from etl.warehouse.ddl import Dialect, table_columns


def _check(f: Field) -> str:
    """The validation a value of ``f`` passes through, in words."""
    parts = [f"{'an' if f.type is FieldType.INT else 'a'} {f.type.value}"]
    if f.min is not None or f.max is not None:
        lo = "-inf" if f.min is None else f"{f.min:g}"
        hi = "+inf" if f.max is None else f"{f.max:g}"
        parts.append(f"in [{lo}, {hi}]")
    if f.allowed is not None:
        shown = ", ".join(f.allowed[:8]) + (", ..." if len(f.allowed) > 8 else "")
        parts.append(f"one of {{{shown}}}")
    parts.append("required" if f.required else "optional")
    if f.nullable:
        parts.append("may be null")
    return ", ".join(parts)


def _drift(f: Field) -> str:
    if f.is_numeric:
        return (
            "numeric: PSI and KS over the baseline's quantile bins, null rate, out-of-range share"
        )
    if f.type is FieldType.TIMESTAMP:
        return "categorical over the timestamp text (rarely useful: derive an hour or a day)"
    return "categorical: PSI and JS over the baseline's top-K values plus 'other', null rate"


def model_task(contract: Contract) -> str:
    """The task a label implies (a ``task`` key in the contract, when present, wins)."""
    if contract.task is not None:
        return contract.task.value.replace("_", " ")
    label = contract.label
    if label is None:
        return "none: no field has role 'label', so retraining is off (data path and drift only)"
    if label.type is FieldType.BOOL:
        return "binary classification"
    if label.type is FieldType.STRING:
        return "classification"
    if label.is_numeric:
        return "regression"
    return f"none: a {label.type.value} label cannot be trained on"


def warnings(contract: Contract) -> list[str]:
    out: list[str] = []
    if not contract.features:
        out.append("no field has role 'feature': drift monitoring has nothing to watch")
    pk = contract.field(contract.partition_key)
    if pk.role is Role.EVENT_TIME or pk.type in (FieldType.BOOL, FieldType.TIMESTAMP):
        out.append(
            f"partition_key {pk.name!r} is a {pk.type.value}: records spread over shards by its"
            " hash, so few distinct values mean hot shards; use an entity id"
        )
    if pk.allowed is not None and len(pk.allowed) < 16:
        out.append(
            f"partition_key {pk.name!r} has only {len(pk.allowed)} allowed values: at most that"
            " many shards ever receive records"
        )
    if contract.labels.late and contract.labels.stream is not None:
        out.append(
            f"labels.stream = {contract.labels.stream!r}: late labels on a second stream are not"
            " consumed yet; `driftline consume` refuses this contract. Put label records on the"
            " records' stream and set [labels] kind_field instead"
        )
    for f in contract.features:
        if f.type is FieldType.STRING and f.allowed is None:
            out.append(
                f"feature {f.name!r} is a string without allowed values: any new value is accepted"
                " and drift sees it only through the top-K"
            )
    return out


def describe_contract(contract: Contract, *, schema: str = "driftline") -> dict[str, Any]:
    """A JSON-able account of the contract's consequences (see the module docstring)."""
    pg = {c.name: c.sql_type for c in table_columns(contract, Dialect.POSTGRES)}
    rs = {c.name: c.sql_type for c in table_columns(contract, Dialect.REDSHIFT)}
    glue = contract.glue_columns()
    own = {f.name for f in contract.fields}
    columns = [
        {
            "name": name,
            "source": "contract" if name in own else ("pipeline" if name in glue else "warehouse"),
            "glue": glue.get(name, "-"),
            "postgres": pg[name],
            "redshift": rs[name],
        }
        for name in pg
    ]
    label = contract.label
    return {
        "contract": contract.name,
        "version": contract.version,
        "hash": contract.hash,
        "source": contract.source,
        "stream": {
            "partition_key": contract.partition_key,
            "max_record_bytes": contract.max_record_bytes,
        },
        "fields": [
            {"name": f.name, "type": f.type.value, "role": f.role.value, "check": _check(f)}
            for f in contract.fields
        ],
        "record_id": contract.id_field.name,
        "event_time": contract.event_time_field.name,
        "partitioning": {
            "columns": [PARTITION_DATE, PARTITION_HOUR],
            "from": contract.event_time_field.name,
            "lake_path": f"lake/{contract.name}/{PARTITION_DATE}=YYYY-MM-DD/{PARTITION_HOUR}=HH/",
            "dead_letters": f"dead-letters/{contract.name}/{PARTITION_DATE}=YYYY-MM-DD/",
        },
        "glue_table": contract.name,
        "warehouse_table": f"{schema}.{contract.name}",
        "columns": columns,
        "drift_features": [{"name": f.name, "method": _drift(f)} for f in contract.features],
        "label": None if label is None else {"name": label.name, "type": label.type.value},
        "model_task": model_task(contract),
        "warnings": warnings(contract),
    }


def render_plan(plan: dict[str, Any]) -> str:
    """The plan as text for a terminal."""
    lines = [
        f"contract {plan['contract']} v{plan['version']} ({plan['source']}): valid",
        f"  hash {plan['hash'][:16]}",
        f"  stream: partition key {plan['stream']['partition_key']!r}, records up to"
        f" {plan['stream']['max_record_bytes']} bytes (larger ones become dead letters)",
        f"  record id {plan['record_id']!r} (the pipeline's identity is shard + sequence number)",
        f"  lake: s3://<lake bucket>/{plan['partitioning']['lake_path']}"
        f" (from {plan['partitioning']['from']!r}, UTC)",
        f"  dead letters: s3://<lake bucket>/{plan['partitioning']['dead_letters']}",
        f"  Glue table {plan['glue_table']}; warehouse table {plan['warehouse_table']}",
        "",
        "fields (each record is checked for):",
    ]
    width = max(len(f["name"]) for f in plan["fields"])
    for f in plan["fields"]:
        lines.append(f"  {f['name']:<{width}}  {f['role']:<10}  {f['check']}")
    lines += ["", "columns (lake / Glue, PostgreSQL, Redshift):"]
    width = max(len(c["name"]) for c in plan["columns"])
    for c in plan["columns"]:
        lines.append(
            f"  {c['name']:<{width}}  {c['glue']:<9}  {c['postgres']:<16}  {c['redshift']}"
            + {"contract": "", "pipeline": "   (added by the pipeline)"}.get(
                c["source"], "   (warehouse only: when the row was merged)"
            )
        )
    lines += ["", "drift monitoring:"]
    lines += [f"  {d['name']}: {d['method']}" for d in plan["drift_features"]] or ["  (none)"]
    label = plan["label"]
    lines += [
        "",
        f"label: {label['name']} ({label['type']})" if label else "label: none",
        f"model task: {plan['model_task']}",
    ]
    if plan["warnings"]:
        lines += ["", "warnings:"] + [f"  - {w}" for w in plan["warnings"]]
    return "\n".join(lines)
