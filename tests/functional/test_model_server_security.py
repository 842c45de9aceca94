"""Hostile and careless clients against a running model server (security review).

Each test speaks raw HTTP over a socket where urllib would refuse to send the request (a negative
Content-Length, a stalled body), and checks both the answer and that the server keeps serving.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.model_server import Limits, ServerProcess, start_model_server
from retrain.backends.local import reload_server, write_pointer
from tests.functional import test_retrain_model_server as base
from tests.functional.test_retrain_model_server import RECORD, _call, _error

models = base.models  # the module's two trained models, as a fixture here too

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def guarded(
    models: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, Path]]:
    """A server with short limits: 1 s socket timeout, 3 connections, 1 s to drain a body."""
    state = tmp_path_factory.mktemp("guarded")
    srv = start_model_server(
        state,
        models[0],
        pointer=state / "CURRENT",
        model_root=models[0].parent,
        limits=Limits(socket_timeout_s=1.0, max_workers=3, drain_s=1.0, max_bytes=1_000_000),
    )
    try:
        yield srv, state
    finally:
        srv.stop()


def _raw(srv: ServerProcess, request: bytes, *, wait_s: float = 5.0) -> bytes:
    """Send bytes as they are; everything the server answers until it closes or goes quiet."""
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(request)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and _complete(out):
                    break
        except TimeoutError:
            pass
    return out


def _complete(response: bytes) -> bool:
    head, _, body = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def _status_and_error(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def _post_head(length: str, path: str = "/invocations") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _serves(srv: ServerProcess) -> bool:
    return _call(srv.url, "/invocations", json.dumps(RECORD).encode())[0] == 200


@pytest.mark.parametrize("length", ["-1", "-99999", "1_000", "+5", "0x10", "12abc", "1e3", ""])
def test_a_content_length_that_is_not_a_plain_count_is_refused_with_400(
    guarded: tuple[ServerProcess, Path], length: str
) -> None:
    srv, _ = guarded
    # GIVEN a request whose Content-Length is negative or not a plain decimal count
    # WHEN it is sent with a body that would go past the limit if read to the end
    response = _raw(srv, _post_head(length) + b"[" + b" " * 1_100_000 + b"]")
    # THEN 400 naming the header, and the server keeps serving
    status, error = _status_and_error(response)
    assert status == 400
    assert error.startswith("Content-Length ") and "non-negative integer" in error
    assert _serves(srv)


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "the JSON body is nested too deeply"),
        (json.dumps({**RECORD, "amount": 10**400}).encode(), "application/json", "record 0:"),
        (b'"' + b"x" * 200_000 + b'"\n', "text/csv", "the body is not valid CSV"),
    ],
    ids=["recursion", "overflow", "csv-field-limit"],
)
def test_input_that_broke_the_parser_is_a_400_with_a_message_and_no_internals(
    guarded: tuple[ServerProcess, Path], body: bytes, content_type: str, error: str
) -> None:
    srv, _ = guarded
    # GIVEN input that raised RecursionError, OverflowError or csv.Error inside the parser
    status, got, _ = _call(srv.url, "/invocations", body, content_type)
    # THEN a 400 with our message; no exception class or text from inside
    assert status == 400, got[:300]
    assert _error(got).startswith(error)
    for internal in (b"Error", b"Traceback", b"recursion depth", b"exceeded"):
        assert internal not in got
    assert _serves(srv)


def test_the_reload_token_is_private_and_required(
    guarded: tuple[ServerProcess, Path], models: tuple[Path, Path]
) -> None:
    srv, state = guarded
    token_file = state / "model_server.token"
    assert srv.token_file == token_file
    # GIVEN the token file in the state folder  THEN only its owner may read it
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text()
    assert len(token) >= 32
    body = json.dumps({"model_dir": str(models[1])}).encode()
    # WHEN a reload comes without the token, or with a wrong one THEN 401 and nothing changes
    for bad in (None, "guess", token[:-1]):
        status, got, _ = _call(srv.url, "/admin/reload", body, token=bad)
        assert status == 401 and "Authorization: Bearer" in _error(got)
    # WHEN it comes as text/plain (what a web page can post without a preflight) THEN 415
    status, got, _ = _call(srv.url, "/admin/reload", body, "text/plain", token=token)
    assert status == 415 and _error(got) == "reload takes an application/json body"
    assert _call(srv.url, "/invocations", json.dumps(RECORD).encode())[2]["X-Model-Id"] == "alpha"
    # WHEN the owner reloads with the token (what retrain's local serving does) THEN it swaps
    assert reload_server(srv.url, models[1], token_file=token_file)["model_id"] == "beta"
    assert reload_server(srv.url, models[0], token_file=token_file)["model_id"] == "alpha"


def test_reload_and_pointer_only_load_models_under_the_model_cache(
    guarded: tuple[ServerProcess, Path], models: tuple[Path, Path], tmp_path: Path
) -> None:
    srv, state = guarded
    token = (state / "model_server.token").read_text()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = models[0].parent / "sneaky-link"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    for target, why in (
        (outside, "is not under the model cache"),
        (link, "is not under the model cache"),  # a symlink out of the cache is resolved first
        (models[0].parent / ".." / outside.name, "is not under the model cache"),
        (models[0].parent / "missing", "is not a directory"),
    ):
        # WHEN a reload names it THEN 400 saying why, and 'alpha' still serves
        body = json.dumps({"model_dir": str(target)}).encode()
        status, got, _ = _call(srv.url, "/admin/reload", body, token=token)
        assert status == 400 and why in _error(got), (target, got)
    for doc in (b"[]", b'{"model_dir": 7}', b"{not json"):
        status, got, _ = _call(srv.url, "/admin/reload", doc, token=token)
        assert status == 400 and "model_dir" in _error(got)
    # WHEN the watched pointer names a folder outside the cache THEN it is not loaded
    write_pointer(state, outside)
    time.sleep(1.0)
    assert json.loads(_call(srv.url, "/model")[1])["model_dir"] == str(models[0])
    write_pointer(state, models[0])


def test_slow_clients_time_out_connections_are_capped_and_draining_is_bounded(
    guarded: tuple[ServerProcess, Path],
) -> None:
    srv, _ = guarded
    port = int(srv.url.rsplit(":", 1)[1])
    # GIVEN three idle connections (the cap) that send nothing
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        time.sleep(0.3)
        # WHEN a fourth client connects THEN it gets a 503 at once instead of a thread
        status, error = _status_and_error(_raw(srv, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert (status, error) == (503, "the server is busy; retry shortly")
        # WHEN the idle ones pass the socket timeout THEN the server closes them
        started = time.monotonic()
        for sock in idle:
            assert sock.recv(1) == b""
        assert time.monotonic() - started < 3.0
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert _serves(srv)
    # GIVEN an oversized body sent slowly (a byte every 0.2 s keeps each read alive)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_post_head("2000000"))
        started, answer = time.monotonic(), b""
        sock.settimeout(0.2)
        while time.monotonic() - started < 8 and b"\r\n\r\n" not in answer:
            try:
                sock.sendall(b" ")
                answer += sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
    # THEN the 413 comes once the drain budget (1 s) is spent, not after the whole body
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert elapsed < 4.0
    assert _serves(srv)
