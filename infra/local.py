"""The local stack: the emulator, the template deployed into it, and the local stand-ins.

``up`` starts (each as its own process, recorded by PID in ``.driftline/state.json``):

* the emulator (moto over hypercorn, HTTP/2 cleartext) on a free loopback port;
* the CloudFormation template, deployed into it (what moto ignores is created by API);
* the alarm evaluator (moto stores alarms but never evaluates them);
* the embedded PostgreSQL standing in for Redshift;
* the retrain dispatcher (polls the retrain rule's SQS target);
* the local model server (``Parts.model_server``, on for ``driftline local up``): it follows the
  model cache's pointer and captures every prediction to ``s3://<lake>/capture/``;
* the console (``driftline console``) on a free loopback port.

``down`` stops exactly those PIDs, and the consumer fleet a ``driftline consume`` or a demo runs
in ``<state>/consumers`` (its supervisor, then any daemon group left), and nothing else.

The local state is one unit and lives for one ``up`` … ``down``: the emulator keeps its state
(streams, lake, leases, registry) in memory, so the warehouse, the model cache, the alarm history
and the leases must not outlive it. ``down`` wipes them (``keep=True`` leaves the files for a
post-mortem look), and ``up`` always starts from a wiped state. Logs (``*.log``) are kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from consumers.fleet import stop_recorded_fleet
from etl.aws import AwsClients, configure_awswrangler
from etl.contract import Contract, load_contract
from etl.exceptions import EmulatorError
from etl.settings import Settings, load_settings
from infra.context import (
    STATE_CONTRACT,
    LocalState,
    normalize_contract_path,
    settings_from_outputs,
    state_dir,
)
from infra.emulator import start_emulator
from infra.lake_table import ensure_lake_table
from infra.procs import pid_alive, spawn_module, stop_pid

if TYPE_CHECKING:
    from infra.stack import StackResult

log = logging.getLogger("driftline.local")


@dataclass(frozen=True, slots=True)
class LocalUp:
    state: LocalState
    resources: list[tuple[str, str, str]]  # (logical id, type, provided by)
    seconds: float


@dataclass(frozen=True, slots=True)
class Parts:
    """Which local stand-ins :func:`up` starts besides the emulator and the stack."""

    warehouse: bool = True  # the embedded PostgreSQL (Redshift stand-in)
    services: bool = True  # alarm evaluator and event dispatcher
    console: bool = True
    #: The local model server, following the model cache's pointer (it answers once a model is
    #: promoted) and capturing every prediction to s3://<lake>/capture/ (docs/quality.md).
    #: ``driftline local up`` starts it; the demos start their own after their first champion.
    model_server: bool = False


def up(
    *,
    stack_name: str = "driftline",
    region: str = "us-east-1",
    directory: Path | None = None,
    parts: Parts | None = None,
    parameters: dict[str, str] | None = None,
    contract_path: str | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> LocalUp:
    """Start everything; idempotent when the recorded emulator still runs.

    ``contract_path`` (default: the shipped example) is remembered in the state: later commands
    against this stack use it unless told otherwise."""
    started = time.monotonic()
    d = directory or state_dir()
    contract_path = normalize_contract_path(contract_path, "--contract")
    contract = load_contract(contract_path)  # a bad contract fails before anything starts
    existing = LocalState.load(d)
    if existing is not None and pid_alive(existing.pids.get("emulator", -1)):
        _check_same_contract(existing, contract_path, d)
        progress(f"local stack already up at {existing.endpoint}")
        return LocalUp(existing, [], 0.0)
    if existing is not None:
        down(directory=d)
    # A state kept by `down --keep` belongs to an emulator that is gone: start from nothing.
    wipe(d)
    d.mkdir(parents=True, exist_ok=True)
    progress("starting the emulator (moto over hypercorn, HTTP/2 cleartext)")
    emu = start_emulator(d)
    state = LocalState(
        endpoint=emu.endpoint, stack_name=stack_name, region=region, pids={"emulator": emu.pid}
    )
    if contract_path is not None:
        state.extra[STATE_CONTRACT] = contract_path
    state.save(d)
    try:
        from infra.stack import contract_parameters

        # the model is named after the contract unless the caller names it
        parameters = {**contract_parameters(contract), **(parameters or {})}
        result = _deploy_stack(state, d, contract, parameters, progress)
        _start_parts(state, d, parts or Parts(), progress)
    except BaseException:
        down(directory=d)
        raise
    resources = [(r.logical_id, r.type, r.provided_by) for r in result.resources]
    return LocalUp(state, resources, time.monotonic() - started)


def _check_same_contract(existing: LocalState, contract_path: str | None, d: Path) -> None:
    """A running stack serves one contract: asking it for another is an error, not a restart."""
    running = existing.extra.get(STATE_CONTRACT)
    if contract_path is not None and contract_path != running:
        raise EmulatorError(
            f"the local stack in {d} is up with contract {running or 'card_transactions'}"
            f" (the shipped example), not {contract_path}; run `driftline local down` first,"
            " or use another DRIFTLINE_STATE_DIR for a second stack"
        )


def _deploy_stack(
    state: LocalState,
    d: Path,
    contract: Contract,
    parameters: dict[str, str],
    progress: Callable[[str], None],
) -> StackResult:
    """The template into the emulator, then the contract's Glue table; outputs into the state."""
    from infra.stack import deploy_local

    clients = AwsClients(region=state.region, endpoint_url=state.endpoint)
    configure_awswrangler(state.endpoint)
    progress("deploying infra/templates/driftline.yaml into the emulator")
    result = deploy_local(clients, stack_name=state.stack_name, parameters=parameters)
    state.outputs = dict(result.outputs)
    state.save(d)
    progress(f"creating the Glue table of contract {contract.name}")
    ensure_lake_table(clients, state.outputs, contract, load_settings())
    return result


def _start_parts(state: LocalState, d: Path, parts: Parts, progress: Callable[[str], None]) -> None:
    if parts.warehouse:
        progress("starting the embedded PostgreSQL (Redshift stand-in)")
        from infra.pg import start_postgres

        pg = start_postgres(d)
        state.pids["postgres"] = pg.pid
        state.extra["warehouse_dsn"] = pg.dsn
        state.extra["warehouse_reader_dsn"] = pg.reader_dsn
        state.save(d)
    if parts.services:
        _start_services(state, d, progress)
    if parts.model_server:
        _start_model_server(state, d, progress)
    if parts.console:
        _start_console(state, d, progress)
    state.save(d)


def local_settings(state: LocalState) -> Settings:
    """The settings of a command against this stack (its endpoint, outputs and contract)."""
    fill = {
        "endpoint_url": state.endpoint,
        "region": state.region,
        "stack_name": state.stack_name,
        **settings_from_outputs(state.outputs),
    }
    if state.extra.get(STATE_CONTRACT):
        fill["contract_path"] = str(state.extra[STATE_CONTRACT])
    return load_settings(fill)


def _start_model_server(state: LocalState, d: Path, progress: Callable[[str], None]) -> None:
    from infra.model_server import capture_options, remember, start_model_server
    from retrain.wiring import pointer_path

    settings = local_settings(state)
    capture = capture_options(settings)
    server = start_model_server(d, None, pointer=pointer_path(settings), capture=capture)
    state.pids["model_server"] = server.pid
    remember(state, server)
    state.save(d)
    where = f"; captures to {capture.s3_uri}/" if capture else ""
    progress(f"model server at {server.url} (serves the champion once one is promoted{where})")


def _start_services(state: LocalState, d: Path, progress: Callable[[str], None]) -> None:
    env = {"DRIFTLINE_STATE_DIR": str(d)}
    evaluator = Path(__file__).with_name("alarm_evaluator.py")
    if evaluator.exists():
        progress("starting the alarm evaluator (moto never evaluates alarms)")
        state.pids["alarm_evaluator"] = spawn_module(
            "infra.alarm_evaluator",
            ["--endpoint", state.endpoint, "--state-dir", str(d), "--interval", "5"],
            d / "alarm_evaluator.log",
            env=env,
        ).pid


def _start_console(state: LocalState, d: Path, progress: Callable[[str], None]) -> None:
    from infra.console.server import remember, start_console

    state.save(d)  # the console resolves the stack from this state
    pid, url = start_console(d, stack=state.stack_name)
    remember(state, pid, url)
    progress(f"console at {url}")


def console_url(state: LocalState) -> str | None:
    """The local console's URL, if ``up`` started one."""
    url = (state.extra.get("console") or {}).get("url")
    return str(url) if url else None


def down(*, directory: Path | None = None, timeout: float = 15.0, keep: bool = False) -> list[str]:
    """Stop the consumer fleet and every process ``up`` recorded, by PID; then wipe the state
    (``keep``: leave its files until the next ``up``). Returns what was stopped."""
    d = directory or state_dir()
    stopped = stop_recorded_fleet(d / "consumers")
    state = LocalState.load(d)
    if state is None:
        if not keep:
            wipe(d)
        return stopped
    # Services first, the emulator last (they talk to it while stopping).
    for name in sorted(state.pids, key=lambda n: n == "emulator"):
        pid = state.pids[name]
        if name == "postgres":
            from infra.pg import stop_postgres

            with contextlib.suppress(Exception):
                stop_postgres(pid, timeout)
        else:
            stop_pid(pid, timeout)
        stopped.append(f"{name} (pid {pid})")
    (d / "state.json").unlink(missing_ok=True)
    if not keep:
        wipe(d)
    return stopped


#: What the local state is, under the state folder (nothing else there is ever deleted).
STATE_ENTRIES = (
    "postgres/data",
    "postgres/pgpass",
    "models",
    "retrain",
    "consumers",
    "alarm-history.jsonl",
    "swap-load.json",
    "emulator.endpoint",
    "model_server.endpoint",
    "console.endpoint",
    "state.json",
)


def wipe(directory: Path) -> list[Path]:
    """Delete the local state (:data:`STATE_ENTRIES`) under ``directory``, every file but logs
    (``*.log``, ``*.log.N``); returns what was deleted. Only when nothing of the stack runs."""
    gone: list[Path] = []
    for entry in STATE_ENTRIES:
        gone += _wipe_tree(directory / entry)
    return gone


def _wipe_tree(root: Path) -> list[Path]:
    if root.is_file() or root.is_symlink():
        if _is_log(root.name):
            return []
        root.unlink(missing_ok=True)
        return [root]
    if not root.is_dir():
        return []
    gone: list[Path] = []
    paths = [*root.rglob("*"), root]
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only when empty: folders holding logs stay
        elif not _is_log(path.name):
            path.unlink(missing_ok=True)
            gone.append(path)
    return gone


def _is_log(name: str) -> bool:
    stem, _, rotation = name.rpartition(".")
    return name.endswith(".log") or (stem.endswith(".log") and rotation.isdigit())


def status(*, directory: Path | None = None) -> dict[str, object]:
    d = directory or state_dir()
    state = LocalState.load(d)
    if state is None:
        return {"up": False}
    procs = {name: {"pid": pid, "alive": pid_alive(pid)} for name, pid in state.pids.items()}
    out: dict[str, object] = {
        "up": procs.get("emulator", {}).get("alive", False),
        "endpoint": state.endpoint,
        "stack": state.stack_name,
        "contract": state.extra.get(STATE_CONTRACT),
        "processes": procs,
        "outputs": state.outputs,
        "console": console_url(state),
    }
    if out["up"]:
        from infra.stack import describe_local

        try:
            res = describe_local(
                AwsClients(region=state.region, endpoint_url=state.endpoint), state.stack_name
            )
            out["resources"] = [
                {
                    "logical_id": r.logical_id,
                    "type": r.type,
                    "physical_id": r.physical_id,
                    "provided_by": r.provided_by,
                }
                for r in res.resources
            ]
        except EmulatorError as exc:  # pragma: no cover - reported, not raised
            out["resources_error"] = str(exc)
    return out
