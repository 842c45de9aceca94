"""The models page's data: the registry (``sagemaker:ListModelPackages`` +
``DescribeModelPackage`` through :mod:`retrain.registry`) and the retrain runs' records
(``s3:ListObjectsV2`` + ``GetObject`` of ``retrain/<model>/<run id>/run.json``)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from etl.exceptions import RetrainError
from infra.console.context import Console, guard
from infra.console.lake_reader import list_prefix
from retrain import registry
from retrain.manual import Action
from retrain.runs import STATE_FILE, RunState, model_name, promotion_metric, settings_contract
from retrain.wiring import model_group


@dataclass
class VersionRow:
    version: int
    status: registry.Approval
    serving: bool
    metric: float | None
    champion_metric: float | None
    metrics: dict[str, float]
    window: str
    baseline_version: str
    code_version: str
    run_id: str
    reason: str
    created: str
    #: The manual gate's buttons this row offers (what ``retrain.manual.decide`` accepts).
    actions: tuple[Action, ...] = ()

    @property
    def buttons(self) -> list[tuple[str, str, bool]]:
        """(action, label, danger) per button."""
        return [(str(a), *BUTTONS[a]) for a in self.actions]


#: A button's label and whether it is drawn as a danger.
BUTTONS: dict[Action, tuple[str, bool]] = {
    Action.APPROVE: ("Approve", False),
    Action.REJECT: ("Reject", True),
    Action.ROLLBACK: ("Roll back", False),
}


def actions_for(status: registry.Approval, serving: bool) -> tuple[Action, ...]:
    """Approve what is not approved; reject what is not rejected; roll back to an approved
    version that does not serve (``decide`` refuses a rollback to anything else)."""
    out: list[Action] = []
    if status is not registry.Approval.APPROVED:
        out.append(Action.APPROVE)
    if status is not registry.Approval.REJECTED:
        out.append(Action.REJECT)
    if status is registry.Approval.APPROVED and not serving:
        out.append(Action.ROLLBACK)
    return tuple(out)


@dataclass
class ModelsView:
    group: str
    metric: str
    rows: list[VersionRow]
    serving: int | None

    def chart(self) -> dict[str, Any]:
        """Challenger's and champion's metric at each registered version (uPlot data)."""
        return {
            "title": f"{self.metric} by version",
            "x": [r.version for r in self.rows],
            "series": {
                "this version": [r.metric for r in self.rows],
                "champion at its retrain": [r.champion_metric for r in self.rows],
            },
        }


def models(console: Console) -> ModelsView:
    s = console.settings
    sm = console.clients.client("sagemaker")
    group = model_group(s)
    versions = guard(
        "SageMaker",
        f"sagemaker:ListModelPackages {group}",
        lambda: registry.list_versions(sm, group),
    )
    champ = registry.champion(versions)
    metric = promotion_metric(s, settings_contract(s))
    rows = []
    for v in versions:
        lin = v.lineage
        window = " → ".join(x for x in (lin.get("window_start"), lin.get("window_end")) if x)
        serving = champ is not None and champ.version == v.version
        rows.append(
            VersionRow(
                version=v.version,
                status=v.status,
                serving=serving,
                metric=v.metrics.get(metric),
                champion_metric=v.champion_metrics.get(metric),
                metrics=dict(v.metrics),
                window=window,
                baseline_version=lin.get("baseline_version", ""),
                code_version=lin.get("code_version", "") or lin.get("git_sha", ""),
                run_id=lin.get("run_id", ""),
                reason=v.reason,
                created=v.created.strftime("%Y-%m-%d %H:%M:%S") if v.created else "",
                actions=actions_for(v.status, serving),
            )
        )
    return ModelsView(group, metric, rows, champ.version if champ else None)


def runs(console: Console, limit: int = 50) -> list[RunState]:
    """The newest retrain runs' records."""
    s = console.settings
    prefix = f"retrain/{model_name(s)}/"
    listed = [o for o in list_prefix(console, prefix) if o.key.endswith(f"/{STATE_FILE}")]
    listed.sort(key=lambda o: o.modified, reverse=True)
    s3 = console.clients.client("s3")
    bucket = s.require("lake_bucket")
    out: list[RunState] = []

    def read(key: str) -> bytes:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    for o in listed[:limit]:
        body = guard("S3", f"s3:GetObject s3://{bucket}/{o.key}", functools.partial(read, o.key))
        try:
            out.append(RunState.from_dict(json.loads(body)))
        except (ValueError, TypeError, RetrainError):
            continue  # not a run record: skipped, the page shows the others
    return out
