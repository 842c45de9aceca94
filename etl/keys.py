"""Object keys of the lake, derived only from (table, shard, sequence range, partition).

A replayed flush covers the same sequence range, so it rewrites the same objects: retries are
idempotent without any bookkeeping. Sequence numbers are digit strings of varying length (56 digits
on AWS, a few on the emulator); they are compared as integers and zero-padded to a fixed width
wherever they become part of a key, so keys also sort in sequence order.

>>> key = lake_object_key("lake", "tx", "shardId-000000000001", "7", "42", "2026-01-01", "05")
>>> key.rsplit("-", 1)[1] == f"{42:056d}.parquet"
True
"""

from __future__ import annotations

SEQ_WIDTH = 56


def _check_sequence(seq: str) -> None:
    if not (isinstance(seq, str) and seq.isascii() and seq.isdigit()):
        raise ValueError(f"sequence number must be a string of digits, got {seq!r}")


def pad_sequence(seq: str) -> str:
    """Zero-pad to :data:`SEQ_WIDTH` digits so string order equals numeric order (object keys).

    >>> pad_sequence("42")[-4:], len(pad_sequence("42"))
    ('0042', 56)
    """
    _check_sequence(seq)
    stripped = seq.lstrip("0") or "0"
    if len(stripped) > SEQ_WIDTH:
        raise ValueError(f"sequence number {seq!r} has more than {SEQ_WIDTH} digits")
    return stripped.zfill(SEQ_WIDTH)


def sequence_key(seq: str) -> int:
    """The sequence number as an integer: the only correct way to order them (``"10" > "9"``).

    >>> sequence_key("9") < sequence_key("10")
    True
    """
    _check_sequence(seq)
    return int(seq)


def range_stem(shard_id: str, first: str, last: str, stream: str = "") -> str:
    """``<shard>-<first>-<last>``, then ``.<stream>`` when the stream incarnation is tagged."""
    return f"{shard_id}-{pad_sequence(first)}-{pad_sequence(last)}{_tag(stream)}"


def _tag(stream: str) -> str:
    if stream and not stream.isalnum():
        raise ValueError(f"a stream tag is alphanumeric, got {stream!r}")
    return f".{stream}" if stream else ""


def lake_object_key(
    lake_prefix: str,
    table: str,
    shard_id: str,
    first: str,
    last: str,
    event_date: str,
    event_hour: str,
    *,
    stream: str = "",
) -> str:
    return (
        f"{lake_prefix}/{table}/event_date={event_date}/event_hour={event_hour}/"
        f"{range_stem(shard_id, first, last, stream)}.parquet"
    )


def dead_letter_key(
    dead_letter_prefix: str,
    table: str,
    shard_id: str,
    first: str,
    last: str,
    day: str,
    stream: str = "",
) -> str:
    stem = range_stem(shard_id, first, last, stream)
    return f"{dead_letter_prefix}/{table}/event_date={day}/{stem}.jsonl"


def manifest_prefix_for(manifest_prefix: str, table: str, shard_id: str) -> str:
    return f"{manifest_prefix}/{table}/{shard_id}/"


def manifest_key(
    manifest_prefix: str, table: str, shard_id: str, first: str, last: str, stream: str = ""
) -> str:
    return (
        f"{manifest_prefix_for(manifest_prefix, table, shard_id)}"
        f"{pad_sequence(first)}-{pad_sequence(last)}{_tag(stream)}.json"
    )


def parse_manifest_name(name: str) -> tuple[str, str]:
    """``'<first>-<last>[.<stream>].json'`` → (first, last) without the padding."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".json").split(".", 1)[0]
    first, _, last = stem.partition("-")
    return str(int(first)), str(int(last))


def manifest_stream(name: str) -> str:
    """The stream incarnation tag of a manifest key (``""``: untagged)."""
    stem = name.rsplit("/", 1)[-1].removesuffix(".json")
    return stem.split(".", 1)[1] if "." in stem else ""
