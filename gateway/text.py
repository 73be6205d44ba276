"""Make untrusted strings safe to log or show: control characters stripped, length capped."""

from __future__ import annotations

import re
from typing import Any

_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
PEER_STRING_CAP = 120  # characters of a peer-supplied string kept in logs and audit details


def clean(value: Any, cap: int = PEER_STRING_CAP) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = _CTRL.sub("?", text)
    return text if len(text) <= cap else text[: cap - 1] + "…"
