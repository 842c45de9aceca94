"""One identifier rule for every name that reaches a catalog or SQL, and the quoting of each driver.

A contract's name becomes a Glue table, a warehouse table, a DuckDB view, an S3 prefix and a
CloudWatch dimension; its field names become columns in all of them. So both follow one rule,
checked when the contract loads: a lower-case identifier (``[a-z_][a-z0-9_]*``, at most 63
characters: PostgreSQL's limit, the smallest of the engines) that is not a reserved word of any
engine the lake or the warehouse is read with (PostgreSQL, Redshift, Athena's Trino and Hive DDL,
DuckDB). Valid names are still quoted wherever they reach SQL, with each driver's own quoting, so
a future engine's new keyword cannot break a statement.

>>> check_identifier("sensor_readings", "contract name")
'sensor_readings'
>>> quote_double('we"ird')
'"we""ird"'
"""

from __future__ import annotations

import re

from etl.exceptions import ContractError

MAX_IDENTIFIER_LENGTH = 63
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")

#: Keywords that are reserved (cannot name a column or table unquoted) in at least one engine
#: driftline's data reaches: PostgreSQL and Redshift (``pg_get_keywords()`` category R plus
#: Redshift's reserved-word list), Trino/Presto (Athena DML), Hive (Athena DDL) and DuckDB.
#: ``date``, ``time``, ``timestamp``, ``user`` and ``values`` are in here on purpose: at least one
#: of those engines refuses them (``hour`` or ``year`` are keywords but reserved in none).
_RESERVED = """
aes128 aes256 all allowoverwrite alter analyse analyze and any array as asc asymmetric
authorization az64 backup between bigint binary blanksasnull boolean both by bytedict bzip2
cache case cast char check collate collation column commit concurrently conf constraint create
credentials cross cube current current_catalog current_date current_path current_role
current_schema current_time current_timestamp current_user current_user_id cursor database date
dayofweek deallocate decimal default deferrable deflate defrag delete delta delta32k desc
describe disable distinct div do double drop else emptyasnull enable encode encrypt encryption
end escape except exchange execute exists explicit extended external extract false fetch float
floor following for foreign freeze from full function globaldict256 globaldict64k grant group
grouping gzip having identity if ignore ilike import in initially inner insert int integer
intersect interval into is isnull join json_array json_exists json_object json_query json_table
json_value language lateral leading left less like limit listagg local localtime localtimestamp
lun luns lzo lzop macro map minus more mostly16 mostly32 mostly8 natural new none normalize not
notnull null nulls numeric of off offline offset oid old on only open or order out outer over
overlaps parallel partialscan partition percent permissions pivot pivot_longer pivot_wider
placing preceding precision prepare preserve primary procedure qualify range raw readratio reads
recover recursive reduce references regexp rejectlog resort respect restore returning revoke
right rlike rollback rollup row rows select session_user set show similar skip smallint snapshot
some start summarize symmetric sync sysdate system system_user table tablesample tag tdes
text255 text32k then time timestamp to top trailing transform trigger trim true truncate
truncatecolumns uescape unbounded union unique uniquejoin unnest unpivot update user using
utc_timestamp values varchar variadic verbose views wallet when where window with without
"""
RESERVED_WORDS: frozenset[str] = frozenset(_RESERVED.split())


def identifier_problem(name: object) -> str | None:
    """Why ``name`` cannot be an identifier, or ``None`` when it can."""
    if not isinstance(name, str) or not name:
        return f"expected a non-empty string, got {name!r}"
    if len(name) > MAX_IDENTIFIER_LENGTH:
        return f"{name!r} is {len(name)} characters; at most {MAX_IDENTIFIER_LENGTH} are allowed"
    if not _IDENTIFIER.fullmatch(name):
        suggestion = re.sub(r"[^a-z0-9_]", "_", name.lower())
        if suggestion[:1].isdigit():
            suggestion = f"_{suggestion}"
        return (
            f"{name!r} is not a lower-case identifier (letters a-z, digits and '_', not starting"
            f" with a digit); e.g. {suggestion!r}"
        )
    if name in RESERVED_WORDS:
        return (
            f"{name!r} is an SQL reserved word in PostgreSQL, Redshift, Athena or DuckDB; choose"
            f" another name, e.g. {name + '_value'!r}"
        )
    return None


def check_identifier(name: object, what: str) -> str:
    """``name`` when it follows the identifier rule; a :class:`ContractError` naming it if not."""
    problem = identifier_problem(name)
    if problem is not None:
        raise ContractError(f"{what}: {problem}")
    assert isinstance(name, str)
    return name


def quote_double(name: str) -> str:
    """An SQL-standard delimited identifier (PostgreSQL, Redshift, DuckDB, Trino): ``"a""b"``."""
    if "\x00" in name:
        raise ContractError(f"an identifier cannot contain a NUL byte: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_backtick(name: str) -> str:
    """A Hive DDL (Athena ``CREATE TABLE``) quoted identifier: ``\u0060a\u0060\u0060b\u0060``."""
    if "\x00" in name:
        raise ContractError(f"an identifier cannot contain a NUL byte: {name!r}")
    return "`" + name.replace("`", "``") + "`"
