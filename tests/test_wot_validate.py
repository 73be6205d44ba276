"""TD validation: the official TD 1.1 JSON Schema plus the checks it misses."""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import WotError
from gateway.wot.jsonparse import Problem, loads_strict, pointer
from gateway.wot.validate import (
    SCHEMA_FILE,
    TdValidationError,
    _validator,
    td_problems,
    validate_td,
    validate_td_text,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "wot"
EXAMPLES = SHARED / "examples"
# ../shared/wot sits beside the repository (CI lays it there too): missing is a failure.


def test_shared_examples_are_present() -> None:
    assert SHARED.is_dir(), f"{SHARED} is missing: the WoT reference files must sit beside the repo"
    for folder in ("valid", "invalid", "tested-with-node-wot"):
        assert list((EXAMPLES / folder).glob("*.json")), f"no examples in {EXAMPLES / folder}"


def _files(folder: str) -> list[Path]:
    return sorted((EXAMPLES / folder).glob("*.json")) if SHARED.is_dir() else []


def _minimal(**extra: Any) -> dict[str, Any]:
    td: dict[str, Any] = {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "title": "T",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
    }
    td.update(extra)
    return td


def _pointers(td: Any, **kw: Any) -> set[str]:
    return {p.pointer for p in td_problems(td, **kw)}


# -- the shared example corpora -------------------------------------------------------------------


def test_example_corpora_are_complete() -> None:
    assert len(_files("valid")) == 30
    assert len(_files("tested-with-node-wot")) == 3
    assert len(_files("invalid")) == 23


@pytest.mark.parametrize("path", _files("valid"), ids=lambda p: p.name)
def test_valid_example_passes(path: Path) -> None:
    td = validate_td_text(path.read_text(encoding="utf-8"))
    assert td["title"]


@pytest.mark.parametrize("path", _files("tested-with-node-wot"), ids=lambda p: p.name)
def test_node_wot_example_passes(path: Path) -> None:
    validate_td_text(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", _files("invalid"), ids=lambda p: p.name)
def test_invalid_example_fails(path: Path) -> None:
    with pytest.raises(TdValidationError) as info:
        validate_td_text(path.read_text(encoding="utf-8"))
    assert info.value.problems
    assert isinstance(info.value, WotError)
    assert info.value.code == "td_invalid"
    for problem in info.value.problems:
        assert problem.pointer == "" or problem.pointer.startswith("/")
        assert problem.message


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("duplicatePropertyAffordanceNames", "/properties/status"),
        ("duplicateSecurityDefinitions", "/securityDefinitions/basic_sc"),
        ("invalidSecuMatch", "/actions/toggle/forms/0/security/0"),
        ("multipleRelType", "/links/1/rel"),
        ("usingTM", "/properties/status/enum/0"),
        ("camelCase", "/actions/toggle/forms/0/op/0"),
        ("invalidSecuScheme", "/securityDefinitions/basic_sc/scheme"),
        ("noTitle", ""),
    ],
)
def test_invalid_example_reason(name: str, where: str) -> None:
    """The schema-valid invalid examples fail for the right reason, at the right place."""
    with pytest.raises(TdValidationError) as info:
        validate_td_text((EXAMPLES / "invalid" / f"{name}.json").read_text(encoding="utf-8"))
    assert where in {p.pointer for p in info.value.problems}


def test_thing_model_is_not_a_td() -> None:
    text = (SHARED / "discovery" / "directory.tm.jsonld").read_text(encoding="utf-8")
    with pytest.raises(TdValidationError) as info:
        validate_td_text(text)
    messages = " ".join(p.message for p in info.value.problems)
    assert "tm:optional" in messages
    assert "placeholder" in messages
    assert "Thing Model" in messages


# -- the packaged schema --------------------------------------------------------------------------


def test_packaged_schema_is_a_verbatim_copy() -> None:
    packaged = resources.files("gateway.wot").joinpath("schema").joinpath(SCHEMA_FILE)
    ours = hashlib.sha256(packaged.read_bytes()).hexdigest()
    upstream = hashlib.sha256((SHARED / SCHEMA_FILE).read_bytes()).hexdigest()
    assert ours == upstream


def test_schema_is_td_1_1_and_compiled_once() -> None:
    validator = _validator()
    assert validator is _validator()
    assert validator.schema["version"] == "1.1-12-March-2025"
    assert "schema" in {p.name for p in resources.files("gateway.wot").iterdir()}


# -- the checks the schema misses -----------------------------------------------------------------


def test_minimal_td_passes_and_is_not_modified() -> None:
    td = _minimal()
    before = copy.deepcopy(td)
    validate_td(td)
    assert td == before


def test_validate_td_text_returns_the_document() -> None:
    assert validate_td_text(json.dumps(_minimal())) == _minimal()


def test_require_op() -> None:
    form: dict[str, Any] = {"href": "http://127.0.0.1/p"}
    td = _minimal(properties={"p": {"type": "string", "forms": [form]}})
    validate_td(td)
    with pytest.raises(TdValidationError) as info:
        validate_td(td, require_op=True)
    assert [p.pointer for p in info.value.problems] == ["/properties/p/forms/0"]
    form["op"] = "readproperty"
    validate_td(td, require_op=True)


def test_undefined_security_names() -> None:
    ok_form = {"href": "http://127.0.0.1/a", "op": "invokeaction", "security": "nosec_sc"}
    bad_form = {"href": "http://127.0.0.1/b", "op": "invokeaction", "security": ["nosec_sc", "x"]}
    td = _minimal(
        security=["nosec_sc", "missing"],
        actions={"a": {"forms": [ok_form]}, "b": {"forms": [bad_form]}},
        forms=[{"href": "http://127.0.0.1/", "op": "readallproperties", "security": "nope"}],
    )
    assert _pointers(td) == {"/security/1", "/actions/b/forms/0/security/1", "/forms/0/security"}


def test_combo_scheme_names_must_be_defined() -> None:
    defs = {
        "nosec_sc": {"scheme": "nosec"},
        "combo_sc": {"scheme": "combo", "oneOf": ["nosec_sc", "ghost"]},
    }
    td = _minimal(securityDefinitions=defs, security="combo_sc")
    assert _pointers(td) == {"/securityDefinitions/combo_sc/oneOf/1"}


def test_one_rel_type_link_is_fine_two_are_not() -> None:
    link = {"rel": "type", "href": "http://127.0.0.1/tm", "type": "application/tm+json"}
    validate_td(_minimal(links=[link, {"rel": "item", "href": "http://127.0.0.1/x"}]))
    assert _pointers(_minimal(links=[link, dict(link), dict(link)])) == {
        "/links/1/rel",
        "/links/2/rel",
    }


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"tm:required": ["#/properties/p"]}, "/tm:required"),
        ({"description": "made for {{CUSTOMER}}"}, "/description"),
        ({"@type": "tm:ThingModel"}, "/@type"),
        ({"@type": ["Thing", "tm:ThingModel"]}, "/@type/1"),
        ({"properties": {"p": {"tm:ref": "x.tm.json#/properties/p"}}}, "/properties/p/tm:ref"),
    ],
)
def test_thing_model_leftovers(extra: dict[str, Any], where: str) -> None:
    assert where in _pointers(_minimal(**extra))


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "number", "enum": [1, "two"]}, "/enum/1"),
        ({"type": "integer", "const": 1.5}, "/const"),
        ({"type": "integer", "default": True}, "/default"),
        ({"type": "boolean", "default": 0}, "/default"),
        ({"type": "string", "enum": [None]}, "/enum/0"),
        ({"type": "number", "minimum": 10, "maximum": 5}, "/minimum"),
        ({"type": "string", "minLength": 3, "maxLength": 2}, "/minLength"),
        (
            {"type": "object", "properties": {"n": {"type": "null", "const": 0}}},
            "/properties/n/const",
        ),
        ({"type": "array", "items": {"type": "integer", "enum": ["a"]}}, "/items/enum/0"),
    ],
)
def test_self_contradicting_data_schemas(schema: dict[str, Any], where: str) -> None:
    action = {"input": schema, "forms": [{"href": "http://127.0.0.1/a", "op": "invokeaction"}]}
    assert _pointers(_minimal(actions={"a": action})) == {f"/actions/a/input{where}"}


def test_consistent_data_schemas_pass() -> None:
    prop = {
        "type": "integer",
        "enum": [1, 2.0],
        "default": 1,
        "minimum": 1,
        "maximum": 1,
        "forms": [{"href": "http://127.0.0.1/p"}],
    }
    validate_td(_minimal(properties={"p": prop}))


@pytest.mark.parametrize(
    ("extra", "valid"),
    [
        ({"id": "urn:uuid:1aa04c7d-da58-5f38-ac59-c90eb0291241"}, True),
        ({"id": "https://example.com/things/1"}, True),
        ({"id": "not a uri"}, False),
        ({"id": "thing-1"}, False),
        ({"created": "2024-02-29T12:00:00Z"}, True),
        ({"modified": "2024-02-29T12:00:00.5+01:00"}, True),
        ({"created": "2023-02-29T12:00:00Z"}, False),
        ({"created": "2024-01-01"}, False),
        ({"modified": "2024-01-01T25:00:00Z"}, False),
    ],
)
def test_formats(extra: dict[str, Any], valid: bool) -> None:
    assert (not td_problems(_minimal(**extra))) is valid


# -- strict JSON ----------------------------------------------------------------------------------


def test_duplicate_keys_anywhere_with_escaped_pointers() -> None:
    text = '{"a": [{"x": 1}, {"y/~": 1, "y/~": 2}], "b": {"c": {"d": 1, "d": 1}}}'
    value, problems = loads_strict(text)
    assert value == {"a": [{"x": 1}, {"y/~": 2}], "b": {"c": {"d": 1}}}
    assert [p.pointer for p in problems] == ["/a/1/y~1~0", "/b/c/d"]


def test_duplicate_that_drops_an_object_with_duplicates() -> None:
    _, problems = loads_strict('{"a": {"x": 1, "x": 2}, "a": {"z": 3}}')
    assert [p.pointer for p in problems] == ["/a"]


def test_duplicate_keys_fail_text_validation() -> None:
    text = json.dumps(_minimal())[:-1] + ', "title": "again"}'
    with pytest.raises(TdValidationError) as info:
        validate_td_text(text)
    assert [p.pointer for p in info.value.problems] == ["/title"]


@pytest.mark.parametrize("text", ["", "{", '{"a": NaN}', '{"a": Infinity}', "[1,]"])
def test_not_json(text: str) -> None:
    with pytest.raises(WotError, match="not valid JSON"):
        validate_td_text(text)


def test_byte_order_mark_is_ignored() -> None:
    validate_td_text("\ufeff" + json.dumps(_minimal()))


@pytest.mark.parametrize("doc", [[], "td", 1, None])
def test_td_must_be_an_object(doc: Any) -> None:
    with pytest.raises(TdValidationError) as info:
        validate_td(doc)
    assert info.value.problems == (Problem("", "a Thing Description must be a JSON object"),)


def test_pointer() -> None:
    assert pointer([]) == ""
    assert pointer(["a/b", 0, "~"]) == "/a~1b/0/~0"
    assert str(Problem("", "x")) == "(root): x"


def test_message_lists_problems_and_truncates() -> None:
    props = {f"p{i}": {"type": "string"} for i in range(25)}  # no forms: 25 problems
    with pytest.raises(TdValidationError) as info:
        validate_td(_minimal(properties=props))
    assert len(info.value.problems) == 25
    text = str(info.value)
    assert text.startswith("invalid Thing Description (25 problems):")
    assert "/properties/p0: 'forms' is a required property" in text
    assert "... and 5 more" in text
