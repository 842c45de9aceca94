"""The console's guards: the access token, CSRF tokens for POSTs, the Host check, and headers.

* Token: with ``DRIFTLINE_CONSOLE_TOKEN`` set, every request must carry it: header
  ``Authorization: Bearer TOKEN``, the cookie the console sets, or once ``?token=TOKEN`` in the
  URL (the console then sets its cookie and redirects to the same URL without it).
* CSRF: every changing action is a POST whose form carries ``csrf``, an HMAC of a per-process
  secret; another site cannot read it, so it cannot forge the POST.
* Host: a loopback console answers only to Host ``127.0.0.1``/``localhost`` (DNS rebinding).
* Headers: a Content-Security-Policy that allows no inline or foreign script, no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from etl.exceptions import ConfigError

TOKEN_ENV = "DRIFTLINE_CONSOLE_TOKEN"
COOKIE = "driftline_console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token (anyone on the network could act)."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            "--host",
            f"{host!r} is not a loopback address; the console binds 127.0.0.1 unless"
            f" {TOKEN_ENV} is set (every request must then carry it)",
        )
    if token is not None and len(token) < 16:
        raise ConfigError(TOKEN_ENV, "is shorter than 16 characters; use a long random token")


class Csrf:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    @property
    def token(self) -> str:
        return hmac.new(self._secret, b"driftline-console-csrf", hashlib.sha256).hexdigest()

    def valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(str(candidate), self.token)


Next = Callable[[Request], Awaitable[Response]]


class GuardMiddleware(BaseHTTPMiddleware):
    """Host check, token check, security headers (in that order)."""

    def __init__(self, app: object, *, token: str | None, hosts: tuple[str, ...] | None) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.token = token
        self.hosts = hosts

    async def dispatch(self, request: Request, call_next: Next) -> Response:
        if self.hosts is not None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
            if host not in self.hosts:
                return PlainTextResponse(f"host {host!r} is not served here", status_code=421)
        if self.token is not None and request.url.path != "/healthz":
            refused = self._check_token(request)
            if refused is not None:
                return _secure(refused)
        started = time.perf_counter()
        resp = await call_next(request)
        resp.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return _secure(resp, static=request.url.path.startswith("/static/"))

    def _check_token(self, request: Request) -> Response | None:
        assert self.token is not None
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given, self.token):
            rest = [(k, v) for k, v in parse_qsl(request.url.query) if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return resp
        auth = request.headers.get("authorization", "")
        bearer = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        cookie = request.cookies.get(COOKIE, "")
        for candidate in (bearer, cookie):
            if candidate and hmac.compare_digest(candidate, self.token):
                return None
        return PlainTextResponse(
            "401: this console needs its token: open the URL it printed (…?token=…) or send"
            " 'Authorization: Bearer TOKEN'",
            status_code=401,
        )


def _secure(resp: Response, *, static: bool = False) -> Response:
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    resp.headers.setdefault("Cache-Control", "max-age=3600" if static else "no-store")
    return resp
