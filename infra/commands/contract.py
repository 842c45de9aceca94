"""``driftline contract check PATH`` and ``driftline contract infer --from SAMPLE.jsonl``.

``check`` validates a contract and prints what the pipeline will do with it (columns, partitioning,
Glue and warehouse types, drift features, label, model task). ``infer`` proposes a contract from
sample records (JSON lines) for you to edit; see docs/contracts.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from etl.contract import load_contract
from etl.contract_infer import DEFAULT_MARGIN, DEFAULT_MAX_CATEGORIES, infer_contract
from etl.contract_plan import describe_contract, render_plan
from etl.exceptions import ConfigError, ContractError
from infra.context import clients_for, resolve_settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "contract", help="check a data contract, or propose one from sample records"
    )
    csub = p.add_subparsers(dest="contract_command", required=True, metavar="ACTION")
    c = csub.add_parser("check", help="validate a contract; print what the pipeline does with it")
    c.add_argument("path", metavar="PATH", help="contract TOML file or s3:// URI")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=_check)
    i = csub.add_parser("infer", help="propose a contract from sample records (JSON lines)")
    i.add_argument("--from", dest="source", required=True, metavar="SAMPLE.jsonl")
    i.add_argument("--out", default=None, metavar="PATH", help="write here (default: stdout)")
    i.add_argument("--name", default=None, help="contract name (default: from the file name)")
    i.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="bounds margin (0.1)")
    i.add_argument(
        "--max-categories",
        type=int,
        default=DEFAULT_MAX_CATEGORIES,
        help="strings with at most this many values get allowed values (20)",
    )
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    i.set_defaults(func=_infer)


def _check(args: argparse.Namespace) -> int:
    s3 = None
    if args.path.startswith("s3://"):
        settings, _ = resolve_settings()
        s3 = clients_for(settings).client("s3")
    elif not Path(args.path).is_file():
        raise ConfigError("PATH", f"{args.path!r} is not a file; pass a contract TOML")
    plan = describe_contract(load_contract(args.path, s3_client=s3))
    print(json.dumps(plan, indent=1) if args.json else render_plan(plan))
    return 0


def read_sample(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The sample's records and its longest line in bytes; a bad line names its number."""
    if not path.is_file():
        raise ConfigError("--from", f"{str(path)!r} is not a file; pass a JSON-lines sample")
    records: list[dict[str, Any]] = []
    longest = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            longest = max(longest, len(line.rstrip(b"\r\n")))
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ContractError(f"{path}:{number}: not a JSON record ({exc})") from None
            if not isinstance(record, dict):
                raise ContractError(f"{path}:{number}: a record must be a JSON object")
            records.append(record)
    return records, longest


def _default_name(path: Path) -> str:
    stem = path.name.split(".", 1)[0].lower()
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in stem)
    return name if name[:1].isalpha() else f"c_{name}"


def _infer(args: argparse.Namespace) -> int:
    if not 0 <= args.margin <= 10:
        raise ConfigError(
            "--margin", f"must be a fraction of the range in [0, 10], got {args.margin}"
        )
    if args.max_categories < 1:
        raise ConfigError("--max-categories", f"must be >= 1, got {args.max_categories}")
    source = Path(args.source)
    records, longest = read_sample(source)
    inferred = infer_contract(
        records,
        name=args.name or _default_name(source),
        margin=args.margin,
        max_categories=args.max_categories,
        max_line_bytes=longest,
    )
    text = inferred.to_toml()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError("--out", f"{out} exists; pass --force to overwrite it")
    out.write_text(text)
    roles = {f["name"]: f["role"] for f in inferred.fields}
    print(
        f"wrote {out}: {len(roles)} fields from {inferred.records} records (id"
        f" {next(k for k, r in roles.items() if r == 'id')!r}, event time"
        f" {next(k for k, r in roles.items() if r == 'event_time')!r},"
        f" {sum(r == 'feature' for r in roles.values())} features); review it, mark the label,"
        f" then `driftline contract check {out}`",
        file=sys.stderr,
    )
    return 0
