"""etl.aws's error helpers: one way to read a botocore ClientError and to split an S3 URI."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from etl.aws import error_code, error_message, is_not_found, split_s3_uri
from etl.exceptions import BaselineError, DriftlineError


def _err(code: str, message: str = "x") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Op")


def test_error_code_reads_a_client_errors_code_and_nothing_else() -> None:
    # GIVEN a ClientError as botocore raises it, one without an Error block, and another error
    err = ClientError({"Error": {"Code": "AlreadyExistsException", "Message": "x"}}, "CreateTable")
    bare = ClientError({}, "GetTable")
    # THEN its code is read; the others have none
    assert error_code(err) == "AlreadyExistsException"
    assert error_code(bare) == ""
    assert error_code(ValueError("no response")) == ""


def test_error_message_reads_the_message_and_nothing_else() -> None:
    assert error_message(_err("ValidationException", "Stack x does not exist")) == (
        "Stack x does not exist"
    )
    assert error_message(ClientError({}, "Op")) == ""
    assert error_message(KeyError("k")) == ""


@pytest.mark.parametrize(
    ("code", "also", "expected"),
    [
        ("404", (), True),  # HeadObject
        ("NotFound", (), True),
        ("NoSuchKey", (), True),  # GetObject
        ("NoSuchBucket", (), False),  # a missing bucket is not a missing object ...
        ("NoSuchBucket", ("NoSuchBucket",), True),  # ... unless the caller says so
        ("AccessDenied", ("NoSuchBucket",), False),
        ("", ("",), False),  # no code is never "not found"
    ],
)
def test_is_not_found_knows_s3s_spellings_and_the_callers_extras(
    code: str, also: tuple[str, ...], expected: bool
) -> None:
    assert is_not_found(_err(code), *also) is expected


def test_is_not_found_is_false_for_errors_without_a_response() -> None:
    assert is_not_found(FileNotFoundError("x")) is False


def test_split_s3_uri_splits_bucket_and_key() -> None:
    assert split_s3_uri("s3://lake/a/b.json") == ("lake", "a/b.json")


@pytest.mark.parametrize("uri", ["lake/a.json", "s3://lake", "s3://lake/", "s3:///key", "/x"])
def test_split_s3_uri_raises_the_callers_error_naming_the_value(uri: str) -> None:
    with pytest.raises(BaselineError, match="expected an s3://bucket/key URI, got") as info:
        split_s3_uri(uri, BaselineError)
    assert repr(uri) in str(info.value)
    with pytest.raises(DriftlineError):
        split_s3_uri(uri)
