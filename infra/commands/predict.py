"""``driftline predict --json '{...}'``: score records on the endpoint (local or SageMaker)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from etl.exceptions import RetrainError
from infra.commands._common import serving_settings
from infra.context import add_contract_option, clients_for, resolve_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "predict",
        help="score records on the model endpoint",
        description="Send records to the serving endpoint (the local model server, or the"
        " SageMaker endpoint with serving_backend=sagemaker) and print its answer.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--json",
        dest="json_body",
        metavar="JSON",
        help='one record object, a list, or {"instances": [...]}',
    )
    src.add_argument(
        "--csv", dest="csv_body", metavar="ROWS", help="CSV rows in the model's feature order"
    )
    p.add_argument("--endpoint", default=None, help="model server URL (local) to use instead")
    add_contract_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings, local = resolve_settings(args=args, needs_aws=args.endpoint is None)
    settings = serving_settings(settings, local)
    body = (args.json_body if args.json_body is not None else args.csv_body).encode()
    content_type = "application/json" if args.json_body is not None else "text/csv"
    if settings.serving_backend == "sagemaker" and args.endpoint is None:
        runtime = clients_for(settings).client("sagemaker-runtime")
        resp = runtime.invoke_endpoint(
            EndpointName=settings.require("endpoint_name"),
            ContentType=content_type,
            Accept="application/json",
            Body=body,
        )
        print(resp["Body"].read().decode())
        return 0
    url = args.endpoint or settings.model_server_url
    if not url:
        raise RetrainError(
            "no model server is known; start one (the demo does) or pass --endpoint URL /"
            " set DRIFTLINE_MODEL_SERVER_URL"
        )
    req = urllib.request.Request(
        f"{url.rstrip('/')}/invocations",
        data=body,
        method="POST",
        headers={"Content-Type": content_type},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # local server
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(
            f"driftline: the endpoint answered {exc.code}: {exc.read().decode()}", file=sys.stderr
        )
        return 1
    except OSError as exc:
        raise RetrainError(f"model server {url} is unreachable ({exc})") from None
