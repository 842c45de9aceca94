"""What every console page reads through: settings, AWS clients, the contract, and a guard that
turns a failing backend call into a message naming the call (never a stack trace).

The console owns no database: each request reads the same APIs the CLI reads. Settings are
resolved like a CLI command's (config, env, then the local stack's state), and re-resolved when
the local stack's ``state.json`` changes (the demo records its model server there after the
console started).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from etl.aws import AwsClients, error_code, error_message
from etl.contract import Contract, contract_for_settings
from etl.exceptions import DriftlineError
from etl.settings import Settings
from infra.context import LocalState, resolve_settings, state_dir

log = logging.getLogger("driftline.console")
T = TypeVar("T")


class BackendError(DriftlineError):
    """A backend (AWS/emulator, model server, warehouse) call failed; ``call`` names it."""

    def __init__(self, backend: str, call: str, message: str) -> None:
        self.backend = backend
        self.call = call
        self.message = message
        super().__init__(f"{backend}: {call} failed: {message}")


class ConsoleClients(AwsClients):
    """:class:`AwsClients` with short timeouts and few retries: a page must not hang on a
    backend that is down; it says so."""

    def client(self, service: str, **config: Any) -> Any:
        if config:
            return super().client(service, **config)
        with _CLIENT_LOCK:
            if service not in self._cache:
                self._cache[service] = super().client(service, connect_timeout=2, read_timeout=20)
            return self._cache[service]


_CLIENT_LOCK = threading.Lock()


_POOL = ThreadPoolExecutor(8, thread_name_prefix="console-io")


def parallel(*fns: Callable[[], Any]) -> list[Any]:
    """Run independent backend reads at once (a page waits for the slowest, not the sum); the
    first exception is raised after all finished."""
    futures = [_POOL.submit(fn) for fn in fns]
    wait(futures)
    return [f.result() for f in futures]


def _short(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc) or 'Error'}: {error_message(exc)}".strip()
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"


def guard(backend: str, call: str, fn: Callable[[], T]) -> T:
    """Run ``fn``; an AWS, network or driftline error becomes :class:`BackendError`."""
    try:
        return fn()
    except BackendError:
        raise
    except (ClientError, BotoCoreError, urllib.error.URLError, OSError, DriftlineError) as exc:
        log.warning("%s: %s failed: %s", backend, call, exc)
        raise BackendError(backend, call, _short(exc)) from None


@dataclass
class Console:
    """The console's view of one stack."""

    settings: Settings
    clients: AwsClients
    contract: Contract
    state_dir: Path
    local: LocalState | None = None
    #: Caches of immutable S3 objects (key -> (etag, parsed)) shared by the readers.
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    _state_mtime: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_environment(cls, stack: str | None = None) -> Console:
        settings, local = _resolve(stack)
        d = state_dir()
        clients = ConsoleClients(region=settings.region, endpoint_url=settings.endpoint_url)
        console = cls(
            settings=settings,
            clients=clients,
            contract=contract_for_settings(settings, clients),
            state_dir=d,
            local=local,
        )
        console._state_mtime = _mtime(d / "state.json")
        return console

    def refresh(self) -> None:
        """Re-resolve the settings when the local stack's state changed (cheap: one stat)."""
        mtime = _mtime(self.state_dir / "state.json")
        if mtime == self._state_mtime or self.local is None:
            return
        with self._lock:
            if mtime == self._state_mtime:
                return
            try:
                settings, local = _resolve(self.settings.stack_name)
            except DriftlineError as exc:  # keep serving with what we had
                log.warning("re-reading the local stack's state failed: %s", exc)
                return
            self.settings, self.local, self._state_mtime = settings, local, mtime

    def bucket_cache(self, name: str) -> dict[str, Any]:
        return self.cache.setdefault(name, {})

    @property
    def emulated(self) -> bool:
        return self.settings.endpoint_url is not None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _resolve(stack: str | None) -> tuple[Settings, LocalState | None]:
    overrides = {"stack_name": stack} if stack else None
    settings, local = resolve_settings(overrides)
    if local is not None:
        from infra.commands._common import serving_settings

        settings = serving_settings(settings, local)  # the model server's URL and token file
        settings = _local_fill(settings, local, state_dir())
    if settings.warehouse_query_dsn:  # the warehouse card only reads: the read-only role
        settings = settings.replace(warehouse_dsn=settings.warehouse_query_dsn)
    return settings, local


_DEFAULT_CACHE = next(f.default for f in fields(Settings) if f.name == "model_cache_dir")


def _local_fill(settings: Settings, local: LocalState, d: Path) -> Settings:
    """What the local stack's state provides and the settings leave open: the warehouse's read
    DSN, and the model cache (``<state>/models``, where the stack's model server may load from:
    the manual gate's approve extracts the model there)."""
    fill: dict[str, Any] = {}
    reader = local.extra.get("warehouse_reader_dsn") or local.extra.get("warehouse_dsn")
    if settings.warehouse_query_dsn is None and settings.warehouse_dsn is None and reader:
        fill["warehouse_query_dsn"] = str(reader)
    if settings.model_cache_dir == _DEFAULT_CACHE:
        fill["model_cache_dir"] = str(d / "models")
    return settings.replace(**fill) if fill else settings
