"""The one place boto3 clients are made.

Clients are injected everywhere else; code that is not given one asks an :class:`AwsClients`
built from the process's settings. With ``endpoint_url`` set (the local emulator), every client
talks to it and uses dummy credentials unless real ones are configured.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from etl.exceptions import DriftlineError

_WR_LOCK = threading.Lock()
_LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class AwsClients:
    """Creates (and caches) boto3 clients for one region and, optionally, one endpoint."""

    region: str = "us-east-1"
    endpoint_url: str | None = None
    max_attempts: int = 5
    _session: boto3.session.Session | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> AwsClients:
        return cls(region=settings.region, endpoint_url=settings.endpoint_url)

    @property
    def session(self) -> boto3.session.Session:
        if self._session is None:
            kwargs: dict[str, Any] = {"region_name": self.region}
            if self.endpoint_url is not None:
                kwargs.update(_LOCAL_CREDENTIALS)
            self._session = boto3.session.Session(**kwargs)
        return self._session

    def client(self, service: str, **config: Any) -> Any:
        """A cached client for ``service``; extra ``config`` makes an uncached one."""
        if not config and service in self._cache:
            return self._cache[service]
        cfg = Config(retries={"max_attempts": self.max_attempts, "mode": "standard"}, **config)
        made = self.session.client(service, endpoint_url=self.endpoint_url, config=cfg)  # type: ignore[call-overload]
        if not config:
            self._cache[service] = made
        return made

    def s3_filesystem_kwargs(self) -> dict[str, Any]:
        """Arguments for ``pyarrow.fs.S3FileSystem`` (pyarrow ignores AWS_ENDPOINT_URL)."""
        kwargs: dict[str, Any] = {"region": self.region}
        if self.endpoint_url is not None:
            scheme, _, host = self.endpoint_url.partition("://")
            kwargs.update(
                endpoint_override=host,
                scheme=scheme,
                access_key=_LOCAL_CREDENTIALS["aws_access_key_id"],
                secret_key=_LOCAL_CREDENTIALS["aws_secret_access_key"],
                allow_bucket_creation=True,
            )
        return kwargs


_WRANGLER_SERVICES = (
    "s3",
    "glue",
    "sts",
    "athena",
    "redshift",
    "kms",
    "dynamodb",
    "secretsmanager",
)


def configure_awswrangler(endpoint_url: str | None) -> None:
    """Point awswrangler's clients at ``endpoint_url`` (the emulator), or back at AWS with None.

    awswrangler builds its own clients from a boto3 session plus its process-wide ``wr.config``;
    call this once at a process's entry point, like setting ``WR_*_ENDPOINT_URL``.
    """
    import awswrangler as wr

    for service in _WRANGLER_SERVICES:
        setattr(wr.config, f"{service}_endpoint_url", endpoint_url)


@contextlib.contextmanager
def wrangler_endpoint(endpoint_url: str | None) -> Iterator[None]:
    """:func:`configure_awswrangler` for the block only, then the previous endpoints back
    (awswrangler's endpoints are process-global configuration, hence the lock)."""
    import awswrangler as wr

    with _WR_LOCK:
        saved = {s: getattr(wr.config, f"{s}_endpoint_url") for s in _WRANGLER_SERVICES}
        configure_awswrangler(endpoint_url)
        try:
            yield
        finally:
            for service, url in saved.items():
                setattr(wr.config, f"{service}_endpoint_url", url)


def _error(exc: BaseException) -> dict[str, Any]:
    response = getattr(exc, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    return error if isinstance(error, dict) else {}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other exception), so a
    caller tests ``error_code(exc) == "AlreadyExistsException"`` instead of digging in dicts."""
    return str(_error(exc).get("Code", ""))


def error_message(exc: BaseException) -> str:
    """The AWS error message of a botocore ``ClientError`` (``""`` for any other exception)."""
    return str(_error(exc).get("Message", ""))


# What S3 answers for an object that is not there: HEAD says "404" (or "NotFound"), GET "NoSuchKey".
_S3_MISSING = frozenset({"404", "NotFound", "NoSuchKey"})


def is_not_found(exc: BaseException, *also: str) -> bool:
    """True when ``exc`` is S3's "no such object" (any of its spellings) or one of the codes in
    ``also`` (e.g. ``"NoSuchBucket"``); False for any other error, including non-AWS ones.

    >>> from botocore.exceptions import ClientError
    >>> is_not_found(ClientError({"Error": {"Code": "404"}}, "HeadObject"))
    True
    """
    code = error_code(exc)
    return bool(code) and (code in _S3_MISSING or code in also)


def split_s3_uri(uri: str, error: type[DriftlineError] = DriftlineError) -> tuple[str, str]:
    """``("bucket", "key/of/object")`` from ``"s3://bucket/key/of/object"``; anything else raises
    ``error`` (the caller's own kind, e.g. ``BaselineError``) naming the value.

    >>> split_s3_uri("s3://lake/baselines/cards/CURRENT.json")
    ('lake', 'baselines/cards/CURRENT.json')
    """
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        raise error(f"expected an s3://bucket/key URI, got {uri!r}")
    return bucket, key
