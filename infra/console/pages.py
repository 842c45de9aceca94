"""The console's page handlers: validate the request, call a reader, render a template.

A reader's :class:`BackendError` becomes a message in the part of the page that needed it (the
rest renders); a bad parameter is a 400 page naming it.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from etl.exceptions import DriftlineError
from etl.records import Reason
from infra.console import (
    alarms_reader,
    drift_reader,
    lake_reader,
    models_reader,
    overview,
    predict,
)
from infra.console.context import BackendError, Console, parallel
from infra.console.security import Csrf
from retrain.manual import Action, decide

#: Payloads longer than this are cut on the dead-letters page (the size is shown).
PAYLOAD_CHARS = 600
DEAD_LIMITS = (25, 50, 100, 200)


class BadRequestError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        self.message, self.status = message, status
        super().__init__(message)


def _ago(t: datetime | None) -> str:
    if t is None:
        return "never"
    secs = (datetime.now(UTC) - t.astimezone(UTC)).total_seconds()
    if secs < 90:
        return f"{max(secs, 0):.0f} s ago"
    if secs < 5400:
        return f"{secs / 60:.0f} min ago"
    return f"{secs / 3600:.1f} h ago"


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{float(v):.{digits}g}"


def _utc(t: datetime | None) -> str:
    return "—" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


FILTERS: dict[str, Callable[..., Any]] = {"ago": _ago, "num": _num, "utc": _utc}


@dataclass(frozen=True, slots=True)
class Section:
    """A reader's result, or the error that stopped it."""

    data: Any = None
    error: BackendError | None = None


def section(fn: Callable[[], Any]) -> Section:
    try:
        return Section(fn())
    except BackendError as exc:
        return Section(error=exc)
    except DriftlineError as exc:  # e.g. a setting the stack's outputs did not provide
        return Section(error=BackendError("driftline", "configuration", str(exc)))


FRAGMENTS: dict[str, Callable[[Console], Any]] = {
    "stream": overview.stream,
    "consumers": overview.consumers,
    "lake": overview.lake,
    "dead": overview.dead,
    "warehouse": overview.warehouse,
    "alarm": overview.drift_alarm,
    "serving": overview.serving,
}


class PageState:
    def __init__(self, console: Console, env: jinja2.Environment, csrf: Csrf) -> None:
        self.console = console
        self.env = env
        self.csrf = csrf

    # -- rendering ---------------------------------------------------------------------------
    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        c = self.console
        html = self.env.get_template(name).render(
            request=request,
            path=request.url.path,
            stack=c.settings.stack_name,
            where=c.settings.endpoint_url or f"AWS {c.settings.region}",
            contract=c.contract.name,
            csrf=self.csrf.token,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, code=status, message=message)

    def _guarded(self, request: Request, fn: Callable[[], Response]) -> Response:
        self.console.refresh()
        try:
            return fn()
        except BadRequestError as exc:
            return self.error_page(request, exc.status, exc.message)

    # -- overview ----------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        return self.render(request, "overview.html", fragments=list(FRAGMENTS))

    def fragment(self, request: Request) -> Response:
        name = request.path_params["name"]

        def run() -> Response:
            reader = FRAGMENTS.get(name)
            if reader is None:
                raise BadRequestError(f"no fragment {name!r}; known: {', '.join(FRAGMENTS)}", 404)
            got = section(lambda: reader(self.console))
            return self.render(request, f"fragments/{name}.html", s=got)

        return self._guarded(request, run)

    # -- drift -------------------------------------------------------------------------------
    def drift(self, request: Request) -> Response:
        def run() -> Response:
            hours = _choice(request, "hours", drift_reader.HOURS, 3)
            features = [f.name for f in self.console.contract.features]
            since = datetime.now(UTC) - timedelta(hours=hours)
            series, alarm, baseline = parallel(
                lambda: section(lambda: drift_reader.metric_series(self.console, hours, features)),
                lambda: section(lambda: drift_reader.drift_alarm_line(self.console, since)),
                lambda: section(lambda: drift_reader.baseline_view(self.console)),
            )
            charts: dict[str, Any] = {}
            if series.data is not None:
                score, per_feature = series.data
                marks = _alarm_marks(alarm.data)
                threshold = alarm.data.threshold if alarm.data is not None else None
                charts = {
                    "score": {**score.to_json(), "threshold": threshold, "marks": marks},
                    "features": [
                        {**c.to_json(), "threshold": threshold, "marks": marks} for c in per_feature
                    ],
                }
            return self.render(
                request,
                "drift.html",
                hours=hours,
                hour_choices=drift_reader.HOURS,
                series=series,
                alarm=alarm,
                baseline=baseline,
                charts=charts,
            )

        return self._guarded(request, run)

    # -- alarms ------------------------------------------------------------------------------
    def alarms(self, request: Request) -> Response:
        def run() -> Response:
            got = section(lambda: alarms_reader.alarms(self.console))
            return self.render(request, "alarms.html", s=got)

        return self._guarded(request, run)

    # -- models ------------------------------------------------------------------------------
    def models(self, request: Request) -> Response:
        def run() -> Response:
            view, runs = parallel(
                lambda: section(lambda: models_reader.models(self.console)),
                lambda: section(lambda: models_reader.runs(self.console)),
            )
            done = request.query_params.get("done", "")[:300]
            failed = request.query_params.get("failed", "")[:600]
            chart = view.data.chart() if view.data is not None else None
            return self.render(
                request, "models.html", view=view, runs=runs, chart=chart, done=done, failed=failed
            )

        return self._guarded(request, run)

    def confirm(self, request: Request) -> Response:
        def run() -> Response:
            version = _version(request.path_params["version"])
            action = _action(request.query_params.get("action", ""))
            return self.render(request, "confirm.html", version=version, action=str(action))

        return self._guarded(request, run)

    async def act(self, request: Request) -> Response:
        form = await request.form()
        if not self.csrf.valid(str(form.get("csrf", ""))):
            return self.error_page(
                request, 403, "the form's CSRF token is missing or wrong; reload the page and retry"
            )
        try:
            version = _version(request.path_params["version"])
            action = _action(request.path_params["action"])
        except BadRequestError as exc:
            return self.error_page(request, exc.status, exc.message)
        reason = str(form.get("reason", "")).strip()[:200] or None
        from starlette.concurrency import run_in_threadpool

        self.console.refresh()
        try:
            done = await run_in_threadpool(
                decide, self.console.settings, self.console.clients, action, version, reason=reason
            )
        except DriftlineError as exc:
            query = urlencode({"failed": f"{action} v{version}: {exc}"})
            return RedirectResponse(f"/models?{query}", status_code=303)
        msg = (
            f"{action} v{version} done; serving: v{done.serving}"
            if done.serving
            else (f"{action} v{version} done; nothing serves")
        )
        return RedirectResponse(f"/models?{urlencode({'done': msg})}", status_code=303)

    # -- dead letters ------------------------------------------------------------------------
    def dead_letters(self, request: Request) -> Response:
        def run() -> Response:
            reason = request.query_params.get("reason", "")
            reasons = [r.value for r in Reason]
            if reason and reason not in reasons:
                raise BadRequestError(f"reason {reason!r} is not one of {', '.join(reasons)}")
            limit = _choice(request, "limit", DEAD_LIMITS, 50)
            got = section(lambda: lake_reader.dead_letters(self.console))
            rows: list[dict[str, Any]] = []
            if got.data is not None:
                chosen = [d for d in got.data.letters if not reason or d.reason == reason]
                rows = [_letter(d) for d in chosen[:limit]]
            return self.render(
                request,
                "dead_letters.html",
                s=got,
                rows=rows,
                reason=reason,
                reasons=reasons,
                limit=limit,
                limits=DEAD_LIMITS,
            )

        return self._guarded(request, run)

    # -- predict -----------------------------------------------------------------------------
    def predict_form(self, request: Request) -> Response:
        return self._guarded(request, lambda: self._predict_page(request, {}, None, {}))

    def _predict_page(
        self,
        request: Request,
        values: Mapping[str, str],
        answer: Section | None,
        errors: dict[str, str],
        status: int = 200,
        mode: str = "form",
    ) -> Response:
        return self.render(
            request,
            "predict.html",
            status=status,
            inputs=predict.inputs(self.console.contract),
            values=values,
            answer=answer,
            errors=errors,
            mode=mode,
            backend=self.console.settings.serving_backend,
        )

    async def predict(self, request: Request) -> Response:
        form = await request.form()
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        if not self.csrf.valid(values.get("csrf")):
            return self.error_page(request, 403, "the form's CSRF token is missing or wrong")
        mode = "json" if values.get("mode") == "json" else "form"
        self.console.refresh()
        try:
            if mode == "json":
                body = predict.parse_raw(values.get("json", ""))
            else:
                import json

                body = json.dumps(predict.parse_form(self.console.contract, values)).encode()
        except predict.FormError as exc:
            return self._predict_page(request, values, None, exc.errors, 400, mode)
        from starlette.concurrency import run_in_threadpool

        answer = await run_in_threadpool(
            lambda: section(lambda: predict.invoke(self.console, body))
        )
        values["json"] = values.get("json") or body.decode()
        return self._predict_page(request, values, answer, {}, mode=mode)


def _choice(request: Request, name: str, allowed: tuple[int, ...], default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value not in allowed:
        raise BadRequestError(f"{name}={raw!r} is not one of {', '.join(map(str, allowed))}")
    return value


def _version(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 10**6:
        raise BadRequestError(f"model version {raw!r} is not a positive integer")
    return int(raw)


def _action(raw: str) -> Action:
    try:
        return Action(raw)
    except ValueError:
        raise BadRequestError(
            f"action {raw!r} is not one of {', '.join(a.value for a in Action)}"
        ) from None


def _alarm_marks(alarm: drift_reader.AlarmLine | None) -> list[dict[str, Any]]:
    if alarm is None:
        return []
    return [{"t": int(t.time.timestamp()), "state": t.state} for t in alarm.transitions]


def _letter(d: lake_reader.DeadLetter) -> dict[str, Any]:
    size = len(d.payload.encode())
    if d.base64:
        with contextlib.suppress(ValueError):
            size = len(base64.b64decode(d.payload, validate=True))
    return {
        "d": d,
        "payload": d.payload[:PAYLOAD_CHARS],
        "cut": len(d.payload) > PAYLOAD_CHARS,
        "bytes": size,
    }


__all__ = ["FILTERS", "BadRequestError", "PageState"]
