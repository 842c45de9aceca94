"""``driftline deploy`` / ``driftline destroy``: the stack on AWS, or in the running emulator.

On AWS, ``deploy`` packages the app (wheel + lock) and the retrain Lambda's zip into the artifacts
bucket (``driftline-artifacts-<account>-<region>``, created if absent), uploads the template,
creates a change set (CREATE or UPDATE), waits, executes it, waits and prints the outputs. With
``--local`` (or whenever the local stack's state or ``DRIFTLINE_ENDPOINT_URL`` points at the
emulator) the same commands deploy the same template into the emulator.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from etl.aws import AwsClients
from etl.contract import Contract, contract_for_settings
from etl.exceptions import ConfigError
from etl.settings import Settings
from infra.context import (
    STATE_CONTRACT,
    LocalState,
    add_contract_option,
    resolve_settings,
    state_dir,
)
from infra.lake_table import ensure_lake_table
from infra.stack import StackResult, contract_parameters, deploy_local, teardown_local
from infra.stack_aws import deploy_aws, destroy_aws


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "deploy",
        help="create or update the stack (AWS, or the emulator with --local)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a template parameter (repeatable), e.g. --param ShardCount=4",
    )
    p.add_argument("--json", action="store_true", help="print outputs and resources as JSON")
    add_contract_option(p)
    p.set_defaults(func=run_deploy)

    d: argparse.ArgumentParser = subparsers.add_parser(
        "destroy",
        help="delete the stack (the lake bucket is retained on AWS)",
        description="Delete the stack. On AWS the lake bucket is kept (DeletionPolicy Retain);"
        " locally everything goes.",
    )
    _common(d)
    d.set_defaults(func=run_destroy)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", default=None, metavar="NAME", help="stack name (default: settings)")
    p.add_argument("--region", default=None, help="AWS region (default: settings)")
    p.add_argument(
        "--local", action="store_true", help="target the running emulator (`driftline local up`)"
    )


def parse_params(items: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{"K": "V"}``; a malformed item names itself."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--param", f"expected K=V, got {item!r}")
        out[key.strip()] = value
    return out


def _target(args: argparse.Namespace) -> tuple[AwsClients, Settings, bool]:
    overrides = {"stack_name": args.stack, "region": args.region}
    settings, _local = resolve_settings(overrides, args=args)
    local = args.local or settings.endpoint_url is not None
    if args.local and settings.endpoint_url is None:
        raise ConfigError(
            "--local", "no emulator is running; start it with `driftline local up` first"
        )
    clients = AwsClients(region=settings.region, endpoint_url=settings.endpoint_url)
    return clients, settings, local


def _print(result: StackResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
        return
    print(result_table(result))
    print()
    width = max((len(k) for k in result.outputs), default=0)
    for key, value in sorted(result.outputs.items()):
        print(f"{key.ljust(width)}  {value}")


def run_deploy(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    clients, settings, local = _target(args)
    stack_name = settings.stack_name
    contract = contract_for_settings(settings, clients)
    where = "the emulator" if local else f"AWS ({clients.region})"
    print(
        f"driftline: deploying stack {stack_name} to {where} with contract {contract.name}",
        file=sys.stderr,
    )
    params = {**contract_parameters(contract, settings.model_name), **params}
    if local:
        result = deploy_local(clients, stack_name=stack_name, parameters=params)
        state = LocalState.load(state_dir())
        if state is not None and state.stack_name == stack_name:
            state.outputs = dict(result.outputs)
            if settings.contract_path is not None:
                state.extra[STATE_CONTRACT] = settings.contract_path
            state.save(state_dir())
    else:
        result = deploy_aws(clients, stack_name=stack_name, parameters=params, contract=contract)
    table = ensure_lake_table(clients, result.outputs, contract, settings)
    print(f"driftline: Glue table {table} matches contract {contract.name}", file=sys.stderr)
    _publish_analytics(clients, result, params, contract, settings, local)
    _print(result, args.json)
    return 0


def _publish_analytics(
    clients: AwsClients,
    result: StackResult,
    params: dict[str, str],
    contract: Contract,
    settings: Settings,
    local: bool,
) -> None:
    """The contract's views, named queries and QuickSight dataset (infra/analytics.py)."""
    from infra.analytics import publish
    from infra.stack import stack_parameters

    principal = params.get("QuickSightPrincipalArn")
    if principal is None and not local:  # an update keeps the deployed value
        cfn = clients.client("cloudformation")
        principal = stack_parameters(cfn, settings.stack_name).get("QuickSightPrincipalArn", "")
    done = publish(
        clients,
        contract,
        result.outputs,
        run_views=not local,
        quicksight_principal=principal or "",
    )
    views = ", ".join(done.views)
    how = "created in Athena" if done.views_run else "DuckDB registers them at query time"
    print(f"driftline: analytics views ({how}): {views}", file=sys.stderr)
    print(f"driftline: named queries: {', '.join(done.named_queries)}", file=sys.stderr)
    if done.dataset:
        print(f"driftline: QuickSight dataset {done.dataset}", file=sys.stderr)


def run_destroy(args: argparse.Namespace) -> int:
    clients, settings, local = _target(args)
    stack_name = settings.stack_name
    if local:
        removed = teardown_local(clients, stack_name)
        for r in removed:
            if r.provided_by.startswith("left behind"):
                print(f"driftline: {r.logical_id}: {r.provided_by}", file=sys.stderr)
        print(f"driftline: local stack {stack_name} removed", file=sys.stderr)
        return 0
    kept = destroy_aws(clients, stack_name)
    print(f"driftline: stack {stack_name} deleted", file=sys.stderr)
    for physical in kept:
        print(
            f"driftline: kept {physical} (DeletionPolicy Retain: the lake's data and the key that"
            " encrypts it); docs/deploy.md#teardown says how to delete them on purpose",
            file=sys.stderr,
        )
    return 0


def result_table(result: StackResult) -> str:
    """A plain-text table of the resources (what `driftline deploy` prints)."""
    rows = [("logical id", "type", "physical id", "provided by")] + [
        (r.logical_id, r.type, r.physical_id or "-", r.provided_by) for r in result.resources
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
        for row in rows
    )
