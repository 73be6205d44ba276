"""The read path's shortcuts (issue 11) give exactly what the general code gives."""

from __future__ import annotations

import json

from gateway.audit.record import FIELD_CAP, clean
from gateway.bindings.http.server import _json
from gateway.text import clean as clean_text


def test_audit_clean_shortcut_matches_the_general_cleaner() -> None:
    class S(str):
        pass

    values: list[object] = [
        "",
        "readproperty",
        "x" * FIELD_CAP,
        "x" * (FIELD_CAP + 1),
        "tab\there",
        "new\nline",
        "bidi\u202eoverride",
        "é ü 温度",
        S("subclass"),
        42,
        None,
        b"bytes",
    ]
    for value in values:
        assert clean(value) == clean_text(str(value), FIELD_CAP, mark=""), value
        assert type(clean(value)) is str
    assert clean("abcdef", cap=3) == clean_text("abcdef", 3, mark="")


def test_json_reply_is_the_compact_dumps() -> None:
    for data in (21.5, None, {"a": [1, "é"], "b": {"c": True}}, "x\u2028y", float("nan")):
        resp = _json(data)
        assert resp.body == json.dumps(data, separators=(",", ":")).encode()
        assert resp.content_type == "application/json" and resp.status == 200
    assert _json({"error": "x"}, 404).status == 404
