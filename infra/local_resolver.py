"""A small resolver for exactly the CloudFormation intrinsics driftline's template uses.

The local stack (:mod:`infra.stack`) resolves with it the properties of the resources moto's
CloudFormation ignores, so :mod:`infra.local_resources` can create them by API with the template's
own names and settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from etl.exceptions import StackError

#: The value ``{"Ref": "AWS::NoValue"}`` resolves to; dropped from dicts and lists.
NO_VALUE: Any = object()


class Resolver:
    """Resolve CloudFormation intrinsics against one stack's parameters and resources.

    Only what driftline's template uses: ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``, ``Fn::If``,
    ``Fn::Join``, ``Fn::Split``, ``Fn::Select``, ``Fn::ToJsonString`` and the condition
    functions (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``). Anything else
    fails with a :class:`StackError` naming it, rather than producing a wrong value.

    >>> r = Resolver({"Parameters": {"P": {"Type": "String", "Default": "x"}}}, {},
    ...              {"AWS::StackName": "s"}, ref=lambda _: "", get_att=lambda _a, _b: "")
    >>> r.resolve({"Fn::Sub": "${AWS::StackName}-${P}"})
    's-x'
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        *,
        ref: Callable[[str], str],
        get_att: Callable[[str, str], str],
    ) -> None:
        self.template = template
        self.pseudo = dict(pseudo)
        self._ref = ref
        self._get_att = get_att
        declared = template.get("Parameters", {})
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            raise StackError(
                f"parameter {unknown[0]!r} is not declared by the template; "
                f"declared: {sorted(declared)}"
            )
        self.parameters: dict[str, str] = {}
        for name, spec in declared.items():
            if name in parameters:
                self.parameters[name] = str(parameters[name])
            elif "Default" in spec:
                default = spec["Default"]
                self.parameters[name] = (
                    ",".join(map(str, default)) if isinstance(default, list) else str(default)
                )
            else:
                raise StackError(f"parameter {name!r} has no default; pass it (--param {name}=...)")
        self._conditions: dict[str, bool] = {}

    # -- conditions -------------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = self.template.get("Conditions", {}).get(name)
            if spec is None:
                raise StackError(f"condition {name!r} is not defined in the template's Conditions")
            self._conditions[name] = self._condition_value(spec)
        return self._conditions[name]

    def _condition_value(self, spec: Any) -> bool:
        if isinstance(spec, dict) and len(spec) == 1:
            ((fn, arg),) = spec.items()
            if fn == "Condition":
                return self.condition(arg)
            if fn == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return bool(str(left) == str(right))
            if fn == "Fn::Not":
                return not self._condition_value(arg[0])
            if fn == "Fn::And":
                return all(self._condition_value(a) for a in arg)
            if fn == "Fn::Or":
                return any(self._condition_value(a) for a in arg)
        raise StackError(f"unsupported condition expression {spec!r}")

    def resource_enabled(self, logical_id: str) -> bool:
        cond = self.template["Resources"][logical_id].get("Condition")
        return True if cond is None else self.condition(cond)

    # -- values -----------------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            spec = self.template["Parameters"][name]
            if spec.get("Type", "String") in ("CommaDelimitedList", "List<String>") or str(
                spec.get("Type", "")
            ).startswith("List<"):
                return [v for v in self.parameters[name].split(",") if v]
            return self.parameters[name]
        if name in self.template.get("Resources", {}):
            return self._ref(name)
        raise StackError(f"Ref to {name!r}, which is no parameter, pseudo parameter or resource")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key.startswith("Fn::") or key == "Condition":
                return self._function(key, arg)
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                out[k] = resolved
        return out

    def _function(self, fn: str, arg: Any) -> Any:
        if fn == "Fn::Sub":
            return self._sub(arg)
        if fn == "Fn::GetAtt":
            logical, _, attr = arg.partition(".") if isinstance(arg, str) else (arg[0], ".", arg[1])
            return self._get_att(logical, attr)
        if fn == "Fn::If":
            cond, when_true, when_false = arg
            return self.resolve(when_true if self.condition(cond) else when_false)
        if fn == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(x) for x in self.resolve(items))
        if fn == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Fn::ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        raise StackError(
            f"the local resolver does not support {fn}; use Ref, Fn::Sub, Fn::GetAtt, Fn::If, "
            "Fn::Join, Fn::Split, Fn::Select or Fn::ToJsonString in properties that are created "
            "locally (infra/local_resources.py)"
        )

    _SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, _, attr = name.partition(".")
                return str(self._get_att(logical, attr))
            value = self.ref(name)
            if value is NO_VALUE:
                raise StackError(f"Fn::Sub cannot substitute AWS::NoValue in {text!r}")
            return ",".join(value) if isinstance(value, list) else str(value)

        return self._SUB_VAR.sub(replace, str(text)).replace("${!", "${")
