"""What a local handler is: create, find and delete one resource type moto's CloudFormation ignores.

Subclasses live in :mod:`infra.local_resources` and :mod:`infra.local_analytics`;
:func:`infra.local_resources.handler_for` picks one by the template's resource type.
"""

from __future__ import annotations

from typing import Any

from etl.aws import AwsClients
from etl.exceptions import StackError


class LeftBehind(Exception):  # noqa: N818 - a signal, not an error
    """The emulator cannot delete this resource; the message says why and when it goes."""


class Handler:
    resource_type = ""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    def physical_id(self, logical_id: str, props: dict[str, Any], stack_name: str) -> str:
        """The id CloudFormation's Ref would return, derived from the resolved properties."""
        raise NotImplementedError

    def attribute(self, physical_id: str, props: dict[str, Any], name: str) -> str:
        raise StackError(f"Fn::GetAtt {self.resource_type}.{name} is not supported locally")

    def create(self, logical_id: str, props: dict[str, Any], stack_name: str) -> None:
        raise NotImplementedError

    def exists(self, physical_id: str, props: dict[str, Any]) -> bool:
        raise NotImplementedError

    def delete(self, physical_id: str, props: dict[str, Any]) -> None:
        raise NotImplementedError
