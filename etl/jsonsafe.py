"""JSON we write never carries NaN or ±inf: Python's ``json`` would write ``NaN``/``Infinity``
tokens (not JSON: other readers refuse the document) or, with ``allow_nan=False``, raise.

``dumps`` writes every non-finite float as ``null`` (a statistic that could not be measured),
strictly.

>>> dumps({"psi": float("inf"), "rows": [1.5, float("nan")]}, sort_keys=True)
'{"psi": null, "rows": [1.5, null]}'
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(finite(obj), allow_nan=False, **kwargs)
