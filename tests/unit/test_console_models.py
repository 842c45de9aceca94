"""The models page's buttons: the manual gate's actions a version's status allows."""

from __future__ import annotations

import pytest

from infra.console.models_reader import actions_for
from retrain.manual import Action
from retrain.registry import Approval


@pytest.mark.parametrize(
    ("status", "serving", "want"),
    [
        # a staged version: approve or reject it
        (Approval.PENDING, False, (Action.APPROVE, Action.REJECT)),
        # the serving version: only reject (the newest approved one left serves then)
        (Approval.APPROVED, True, (Action.REJECT,)),
        # an earlier approved version: reject, or roll back to it
        (Approval.APPROVED, False, (Action.REJECT, Action.ROLLBACK)),
        # a rejected version: approve it after all (decide refuses a rollback to it)
        (Approval.REJECTED, False, (Action.APPROVE,)),
    ],
)
def test_buttons_follow_the_status(
    status: Approval, serving: bool, want: tuple[Action, ...]
) -> None:
    assert actions_for(status, serving) == want
