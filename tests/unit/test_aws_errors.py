"""etl.aws.error_code: one way to read a botocore ClientError's code."""

from __future__ import annotations

from botocore.exceptions import ClientError

from etl.aws import error_code


def test_error_code_reads_a_client_errors_code_and_nothing_else() -> None:
    # GIVEN a ClientError as botocore raises it, one without an Error block, and another error
    err = ClientError({"Error": {"Code": "AlreadyExistsException", "Message": "x"}}, "CreateTable")
    bare = ClientError({}, "GetTable")
    # THEN its code is read; the others have none
    assert error_code(err) == "AlreadyExistsException"
    assert error_code(bare) == ""
    assert error_code(ValueError("no response")) == ""
