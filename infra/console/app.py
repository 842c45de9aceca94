"""The console's ASGI application: routes, templates, error pages.

GETs only read; approve/reject/rollback are POSTs with a CSRF token. A failing backend is shown
in the part of the page that needed it, naming the call; a bad parameter is a 400 page.

>>> from starlette.testclient import TestClient  # doctest: +SKIP
>>> TestClient(build_app(Console.from_environment())).get("/").status_code  # doctest: +SKIP
200
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from infra.console import pages
from infra.console.context import Console
from infra.console.security import Csrf, GuardMiddleware

log = logging.getLogger("driftline.console")
HERE = Path(__file__).parent


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # everything from records and models is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pages.FILTERS)
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "sort_keys": False}
    return env


def build_app(
    console: Console,
    *,
    token: str | None = None,
    hosts: tuple[str, ...] | None = None,
    csrf: Csrf | None = None,
) -> Starlette:
    """The console for ``console``'s stack; ``token`` guards every request when given."""
    env = template_env()
    state = pages.PageState(console, env, csrf or Csrf())

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        return state.error_page(request, code, str(detail))

    async def crashed(request: Request, exc: Exception) -> Response:
        log.exception("console request %s failed", request.url.path)
        return state.error_page(
            request, 500, f"internal error ({type(exc).__name__}); the console log has the details"
        )

    def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "stack": console.settings.stack_name})

    routes = [
        Route("/", state.overview),
        Route("/fragment/{name}", state.fragment),
        Route("/drift", state.drift),
        Route("/alarms", state.alarms),
        Route("/models", state.models),
        Route("/models/{version}/confirm", state.confirm),
        Route("/models/{version}/{action}", state.act, methods=["POST"]),
        Route("/dead-letters", state.dead_letters),
        Route("/predict", state.predict_form),
        Route("/predict", state.predict, methods=["POST"]),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(GuardMiddleware, token=token, hosts=hosts),
        Middleware(GZipMiddleware, minimum_size=800),
    ]
    handlers: dict[Any, Any] = {HTTPException: not_found, Exception: crashed}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.console = console
    return app


__all__ = ["HTMLResponse", "build_app", "template_env"]
