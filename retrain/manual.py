"""The manual gate: approve, reject or roll back one registered model version.

One function for every caller (``driftline models approve|reject|rollback`` and the console's
buttons), so a decision taken by hand is the same whichever way a person takes it:

* approve: deploy the version, approve it in the registry, publish its baseline as current;
* reject: mark it rejected; if it was serving, the newest approved version that is left serves
  again (its baseline becomes current again);
* rollback: serve an earlier *approved* version again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from etl.aws import AwsClients
from etl.exceptions import RetrainError
from etl.settings import Settings
from retrain import registry
from retrain.promote import activate
from retrain.quality_alarm import arm_at_promotion
from retrain.runs import settings_contract
from retrain.wiring import make_serving, model_group, work_dir

log = logging.getLogger(__name__)


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a manual action did: the version acted on and what serves afterwards."""

    action: Action
    version: int
    serving: int | None
    endpoint: str | None = None
    baseline_uri: str | None = None
    #: The quality alarm's new line after the new champion (None: not armed).
    quality_alarm: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": str(self.action),
            "version": self.version,
            "serving": self.serving,
        }
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.baseline_uri is not None:
            out["baseline_uri"] = self.baseline_uri
        if self.quality_alarm is not None:
            out["quality_alarm"] = self.quality_alarm
        return out


def serving_image(settings: Settings) -> str:
    if settings.serving_backend == "sagemaker":
        from retrain.backends.sagemaker import resolve_image

        return resolve_image(
            settings.region, settings.sklearn_framework_version, settings.sagemaker_serving_instance
        )
    from retrain.backends.local import LOCAL_IMAGE

    return LOCAL_IMAGE


def _reject(
    sm: Any,
    group: str,
    target: registry.ModelVersion,
    champ: registry.ModelVersion | None,
    reason: str,
) -> Decision | registry.ModelVersion:
    """Reject ``target``. If it was serving, the newest approved version left is returned, to
    serve again; otherwise what serves is unchanged (the decision is returned as it stands)."""
    registry.set_status(sm, target, registry.Approval.REJECTED, reason=reason)
    if champ is None or champ.version != target.version:
        return Decision(Action.REJECT, target.version, champ.version if champ else None)
    fallback = registry.champion(registry.list_versions(sm, group))
    if fallback is None:
        log.warning("no approved version is left to serve")
        return Decision(Action.REJECT, target.version, None)
    return fallback


def decide(
    settings: Settings,
    clients: AwsClients,
    action: Action | str,
    version: int,
    *,
    reason: str | None = None,
) -> Decision:
    """Apply ``action`` to model ``version``; raises :class:`RetrainError` for a refused action."""
    try:
        act = Action(action)
    except ValueError:
        raise RetrainError(
            f"unknown action {action!r}; expected one of {[a.value for a in Action]}"
        ) from None
    sm = clients.client("sagemaker")
    group = model_group(settings)
    versions = registry.list_versions(sm, group)
    champ = registry.champion(versions)
    target = registry.find(versions, version)
    if act is Action.ROLLBACK and target.status != registry.Approval.APPROVED:
        raise RetrainError(
            f"version {target.version} is {target.status}; rollback serves an earlier approved"
            f" version; use `driftline models approve {target.version}` to approve it"
        )
    if act is Action.REJECT:
        reinstated = _reject(sm, group, target, champ, reason or "rejected by hand")
        if isinstance(reinstated, Decision):
            return reinstated
        target, why = reinstated, f"restored after v{target.version} was rejected"
    else:
        why = reason or f"{act} by hand"
    serving = make_serving(settings, clients)
    done = activate(
        settings,
        clients,
        serving,
        target,
        image_uri=serving_image(settings),
        reason=why,
        staging_dir=work_dir(settings) / "manual",
    )
    armed = arm_at_promotion(settings, clients, settings_contract(settings), done.version)
    return Decision(
        act,
        version,
        done.version.version,
        endpoint=done.deployment.endpoint,
        baseline_uri=done.baseline_uri,
        quality_alarm=armed.to_dict() if armed else None,
    )
