"""Baseline storage (I/O at the edge, the S3 client is injected):
``<prefix>/<table>/<version>.json`` and a pointer ``<prefix>/<table>/CURRENT.json`` naming the
current one; :class:`CurrentBaseline` follows the pointer for the record processor.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl import aws
from etl.contract import Contract
from etl.exceptions import BaselineError
from etl.profile.model import POINTER_NAME, Profile, check_contract

log = logging.getLogger("etl.profile")


@dataclass(frozen=True, slots=True)
class BaselinePointer:
    """The content of ``baselines/<table>/CURRENT.json``."""

    version: str
    uri: str


def baseline_key(prefix: str, table: str, version: str) -> str:
    return f"{prefix}/{table}/{version}.json"


def pointer_key(prefix: str, table: str) -> str:
    return f"{prefix}/{table}/{POINTER_NAME}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    return aws.split_s3_uri(uri, BaselineError)


def _is_missing(exc: Exception) -> bool:
    return aws.is_not_found(exc)


def save_baseline(
    s3_client: Any, bucket: str, prefix: str, profile: Profile, *, make_current: bool = True
) -> str:
    """Write the profile (and, by default, the pointer naming it current); returns its s3 URI."""
    key = baseline_key(prefix, profile.table, profile.version)
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=profile.to_json().encode(), ContentType="application/json"
    )
    uri = f"s3://{bucket}/{key}"
    if make_current:
        pointer = json.dumps({"version": profile.version, "uri": uri}, sort_keys=True)
        s3_client.put_object(
            Bucket=bucket,
            Key=pointer_key(prefix, profile.table),
            Body=pointer.encode(),
            ContentType="application/json",
        )
    log.info("baseline %s written to %s (current=%s)", profile.version, uri, make_current)
    return uri


def read_pointer(s3_client: Any, bucket: str, prefix: str, table: str) -> BaselinePointer | None:
    """The current-baseline pointer, or None when no baseline was published yet."""
    key = pointer_key(prefix, table)
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if _is_missing(exc):
            return None
        raise
    try:
        doc = json.loads(body)
        return BaselinePointer(version=str(doc["version"]), uri=str(doc["uri"]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BaselineError(
            f"s3://{bucket}/{key}: malformed pointer ({exc}); republish the"
            " baseline with `driftline baseline build`"
        ) from None


def load_baseline(uri: str | Path, *, s3_client: Any = None) -> Profile:
    """Load a baseline from ``s3://bucket/key`` (client required) or a local file path."""
    text = str(uri)
    if text.startswith("s3://"):
        if s3_client is None:
            raise BaselineError(f"{text}: an S3 client is needed to read an s3:// baseline")
        bucket, key = split_s3_uri(text)
        try:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                raise BaselineError(
                    f"{text} does not exist; list baselines under"
                    f" s3://{bucket}/{key.rsplit('/', 1)[0]}/"
                ) from None
            raise
        return Profile.from_json(body, source=text)
    path = Path(text.removeprefix("file://"))
    if not path.is_file():
        raise BaselineError(f"baseline file {str(path)!r} does not exist")
    return Profile.from_json(path.read_bytes(), source=str(path))


def write_baseline_file(path: str | Path, profile: Profile) -> Path:
    p = Path(str(path).removeprefix("file://"))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(profile.to_json())
    tmp.replace(p)
    return p


def load_current_baseline(
    s3_client: Any, bucket: str, prefix: str, table: str, *, contract: Contract | None = None
) -> Profile | None:
    """The baseline the pointer names (None if none yet); checked against ``contract`` if given."""
    pointer = read_pointer(s3_client, bucket, prefix, table)
    if pointer is None:
        return None
    profile = load_baseline(pointer.uri, s3_client=s3_client)
    if contract is not None:
        check_contract(profile, contract)
    return profile


class CurrentBaseline:
    """Follows the pointer: ``refresh()`` re-reads it and loads the profile only when it changed.

    The record processor calls ``refresh()`` at every window close, so a newly published baseline
    takes effect without a restart. A baseline for another contract is refused (BaselineError).
    """

    def __init__(self, s3_client: Any, bucket: str, prefix: str, contract: Contract) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = prefix
        self._contract = contract
        self.profile: Profile | None = None
        self.pointer: BaselinePointer | None = None

    def refresh(self) -> Profile | None:
        pointer = read_pointer(self._s3, self._bucket, self._prefix, self._contract.name)
        if pointer is None or pointer == self.pointer:
            return self.profile
        profile = load_baseline(pointer.uri, s3_client=self._s3)
        check_contract(profile, self._contract)
        self.profile, self.pointer = profile, pointer
        log.info("drift baseline now %s", pointer.version)
        return profile
