"""Environment overrides for runtime attributes (``MILLSTREAM__RUNTIME__FLOW_RUN__NAME=x``)."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any


def override(module: str, attribute: str, value: Any) -> Any:
    """The value of an environment override, cast like ``value``, else ``value`` itself.

    Both Millstream's and Prefect's names are honoured (``PREFECT__RUNTIME__…``), so tests that
    mock runtime attributes keep working after the import change.
    """
    suffix = f"__RUNTIME__{module.upper()}__{attribute.upper()}"
    raw = os.environ.get("MILLSTREAM" + suffix, os.environ.get("PREFECT" + suffix))
    if raw is None:
        return value
    if isinstance(value, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(value, int):
        return int(raw)
    if isinstance(value, dt.datetime):
        return dt.datetime.fromisoformat(raw)
    if isinstance(value, dict | list):
        return json.loads(raw)
    return raw
