"""TD builder: layout, security, ids, the directory TD and the digest."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urljoin

import pytest

from gateway.errors import WotError
from gateway.things.base import ActionSpec, EventSpec, PropertySpec, Thing
from gateway.wot.td import (
    THING_ID_NAMESPACE,
    build_directory_td,
    build_td,
    directory_id,
    td_digest,
    thing_id,
)
from gateway.wot.validate import validate_td, validate_td_text

GW = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
BASE = "http://127.0.0.1:8080"


class DummyLock(Thing):
    """A lock with a read-only observable property, a writable one, two actions and an event."""

    type_name = "lock"
    semantic_type = "saref:Actuator"

    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return {
            "locked": PropertySpec("locked", "Locked", MappingProxyType({"type": "boolean"})),
            "relockDelay": PropertySpec(
                "relockDelay",
                "Relock delay",
                {"type": "number", "unit": "s", "minimum": 0, "maximum": 600},
                read_only=False,
                observable=False,
                description="Seconds before the lock relocks itself",
            ),
        }

    @property
    def actions(self) -> Mapping[str, ActionSpec]:
        return {
            "unlock": ActionSpec(
                "unlock",
                "Unlock",
                input={"type": "object", "properties": {"seconds": {"type": "integer"}}},
                output={"type": "boolean"},
            ),
            "lock": ActionSpec("lock", "Lock", safe=False, idempotent=True),
        }

    @property
    def events(self) -> Mapping[str, EventSpec]:
        return {"jammed": EventSpec("jammed", "Jammed", {"type": "string", "enum": ["bolt"]})}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read_property(self, name: str) -> Any:
        return True


class BareSensor(Thing):
    """No semantic type, no actions, no events, one property."""

    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return {"t": PropertySpec("t", "Temperature", {"type": "number", "unit": "cel"})}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read_property(self, name: str) -> Any:
        return 20.0


class Empty(Thing):
    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def read_property(self, name: str) -> Any:
        return None


class Misnamed(BareSensor):
    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return {"t": PropertySpec("temp", "Temperature", {"type": "number"})}


class BadSchema(BareSensor):
    @property
    def properties(self) -> Mapping[str, PropertySpec]:
        return {"t": PropertySpec("t", "Temperature", {"type": "float"})}


def _lock_td() -> dict[str, Any]:
    return build_td(
        DummyLock("front-door", "Front door", "The front door"),
        gateway_id=GW,
        base_url=BASE,
        check=True,
    )


def _all_forms(td: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from td.get("forms", [])
    for kind in ("properties", "actions", "events"):
        for affordance in td.get(kind, {}).values():
            yield from affordance["forms"]


def _form_view(forms: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(f["href"], f["op"], f.get("htv:methodName"), f.get("subprotocol")) for f in forms]


# -- validity -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "thing",
    [DummyLock("front-door", "Front door"), BareSensor("t1", "Sensor"), Empty("e", "Nothing")],
)
def test_built_tds_are_valid_with_explicit_ops(thing: Thing) -> None:
    td = build_td(thing, gateway_id=GW, base_url=BASE, check=True)
    validate_td(td, require_op=True)
    assert validate_td_text(json.dumps(td), require_op=True) == td


def test_context_type_and_header() -> None:
    td = _lock_td()
    assert td["@context"] == [
        "https://www.w3.org/2022/wot/td/v1.1",
        {"@language": "en", "saref": "https://saref.etsi.org/core/"},
    ]
    assert td["@type"] == "saref:Actuator"
    assert td["id"] == thing_id(GW, "front-door")
    assert td["title"] == "Front door"
    assert td["description"] == "The front door"
    assert td["base"] == f"{BASE}/things/front-door/"


def test_bare_thing_has_plain_context_and_no_type() -> None:
    td = build_td(BareSensor("t1", "Sensor"), gateway_id=GW, base_url=BASE, check=True)
    assert td["@context"] == ["https://www.w3.org/2022/wot/td/v1.1", {"@language": "en"}]
    assert "@type" not in td
    assert "description" not in td
    assert "actions" not in td and "events" not in td


def test_thing_without_properties_has_no_root_form() -> None:
    td = build_td(Empty("e", "Nothing"), gateway_id=GW, base_url=BASE, check=True)
    assert "properties" not in td and "forms" not in td


# -- security -------------------------------------------------------------------------------------


def test_exactly_one_thing_level_bearer_scheme_and_no_form_security() -> None:
    td = _lock_td()
    assert td["security"] == ["bearer_sc"]
    assert td["securityDefinitions"].keys() == {"bearer_sc"}
    scheme = td["securityDefinitions"]["bearer_sc"]
    assert {k: scheme[k] for k in ("scheme", "format", "alg", "in", "authorization")} == {
        "scheme": "bearer",
        "format": "jwt",
        "alg": "ES256",
        "in": "header",
        "authorization": BASE,
    }
    forms = list(_all_forms(td))
    assert len(forms) == 10  # 1 root + 3 + 2 property, 1 + 1 action, 2 event
    assert not [f for f in forms if "security" in f or "scopes" in f]


# -- the href / op layout -------------------------------------------------------------------------


def test_property_forms() -> None:
    props = _lock_td()["properties"]
    assert _form_view(props["locked"]["forms"]) == [
        ("properties/locked", "readproperty", "GET", None),
        ("properties/locked/observe", ["observeproperty", "unobserveproperty"], None, "longpoll"),
        ("properties/locked/sse", "observeproperty", None, "sse"),
    ]
    assert _form_view(props["relockDelay"]["forms"]) == [
        ("properties/relockDelay", "readproperty", "GET", None),
        ("properties/relockDelay", "writeproperty", "PUT", None),
    ]


def test_property_data_schema() -> None:
    props = _lock_td()["properties"]
    locked = {k: v for k, v in props["locked"].items() if k != "forms"}
    assert locked == {
        "type": "boolean",
        "title": "Locked",
        "readOnly": True,
        "writeOnly": False,
        "observable": True,
    }
    delay = props["relockDelay"]
    assert (delay["unit"], delay["minimum"], delay["maximum"]) == ("s", 0, 600)
    assert (delay["readOnly"], delay["observable"]) == (False, False)
    assert delay["description"] == "Seconds before the lock relocks itself"


def test_action_forms_and_schema() -> None:
    actions = _lock_td()["actions"]
    assert _form_view(actions["unlock"]["forms"]) == [
        ("actions/unlock", "invokeaction", "POST", None)
    ]
    assert actions["unlock"]["input"]["properties"]["seconds"] == {"type": "integer"}
    assert actions["unlock"]["output"] == {"type": "boolean"}
    assert (actions["unlock"]["safe"], actions["unlock"]["idempotent"]) == (False, False)
    assert "input" not in actions["lock"] and "output" not in actions["lock"]
    assert actions["lock"]["idempotent"] is True


def test_event_forms() -> None:
    event = _lock_td()["events"]["jammed"]
    assert event["data"] == {"type": "string", "enum": ["bolt"]}
    assert _form_view(event["forms"]) == [
        ("events/jammed", ["subscribeevent", "unsubscribeevent"], None, "longpoll"),
        ("events/jammed/sse", "subscribeevent", None, "sse"),
    ]


def test_thing_level_form() -> None:
    assert _form_view(_lock_td()["forms"]) == [("properties", "readallproperties", "GET", None)]


def test_every_form_is_relative_explicit_and_json() -> None:
    td = _lock_td()
    for form in _all_forms(td):
        assert form["op"]
        assert form["contentType"] == "application/json"
        assert "://" not in form["href"]
        resolved = urljoin(td["base"], form["href"])
        assert resolved.startswith(f"{BASE}/things/front-door/")


def test_node_wot_picks_long_poll_first() -> None:
    """node-wot takes the first form with a matching op, and cannot use SSE with a bearer."""
    td = _lock_td()

    def first(forms: list[dict[str, Any]], op: str) -> dict[str, Any]:
        return next(f for f in forms if op == f["op"] or op in f["op"])

    for prop in td["properties"].values():
        if prop["observable"]:
            assert first(prop["forms"], "observeproperty")["subprotocol"] == "longpoll"
    for event in td["events"].values():
        assert first(event["forms"], "subscribeevent")["subprotocol"] == "longpoll"


@pytest.mark.parametrize(
    ("base_url", "base"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/things/front-door/"),
        ("https://gw.local/prefix", "https://gw.local/prefix/things/front-door/"),
    ],
)
def test_base_url_normalised(base_url: str, base: str) -> None:
    td = build_td(
        DummyLock("front-door", "Front door"), gateway_id=GW, base_url=base_url, check=True
    )
    assert td["base"] == base
    assert td["securityDefinitions"]["bearer_sc"]["authorization"] == base_url.rstrip("/")


@pytest.mark.parametrize(
    "base_url", ["", "127.0.0.1:8080", "ftp://h/", "http:///x", "http://h/?q=1"]
)
def test_bad_base_url(base_url: str) -> None:
    with pytest.raises(WotError):
        build_td(BareSensor("t1", "Sensor"), gateway_id=GW, base_url=base_url, check=True)


def test_names_are_percent_encoded() -> None:
    td = build_td(BareSensor("hall way/1", "Sensor"), gateway_id=GW, base_url=BASE, check=True)
    assert td["base"] == f"{BASE}/things/hall%20way%2F1/"


def test_spec_name_must_match_its_key() -> None:
    with pytest.raises(WotError, match="temp"):
        build_td(Misnamed("t1", "Sensor"), gateway_id=GW, base_url=BASE, check=True)


def test_invalid_spec_schema_is_refused_with_its_pointer() -> None:
    with pytest.raises(WotError, match="/properties/t/type"):
        build_td(BadSchema("t1", "Sensor"), gateway_id=GW, base_url=BASE, check=True)


def test_result_is_fresh_and_specs_untouched() -> None:
    thing = DummyLock("front-door", "Front door", "The front door")
    td = build_td(thing, gateway_id=GW, base_url=BASE, check=True)
    td["properties"]["locked"]["type"] = "string"
    td["actions"]["unlock"]["input"]["properties"]["seconds"]["type"] = "string"
    assert build_td(thing, gateway_id=GW, base_url=BASE, check=True) == _lock_td()
    assert thing.properties["locked"].schema == {"type": "boolean"}
    assert thing.actions["unlock"].input == {
        "type": "object",
        "properties": {"seconds": {"type": "integer"}},
    }


# -- ids ------------------------------------------------------------------------------------------


def test_thing_id_is_stable_and_scoped() -> None:
    first = thing_id(GW, "front-door")
    assert first == thing_id(GW, "front-door")
    assert first != thing_id("another-gateway", "front-door")
    assert first != thing_id(GW, "back-door")
    parsed = uuid.UUID(first.removeprefix("urn:uuid:"))
    assert first.startswith("urn:uuid:") and parsed.version == 5
    assert parsed == uuid.uuid5(THING_ID_NAMESPACE, f"{GW}/front-door")


def test_thing_id_known_value() -> None:
    """Pinned: changing the namespace or the name layout would change every Thing id."""
    assert THING_ID_NAMESPACE == uuid.uuid5(
        uuid.NAMESPACE_URL, "https://github.com/streembit/thing-gateway/wot/thing-id"
    )
    assert thing_id("gw", "lock") == f"urn:uuid:{uuid.uuid5(THING_ID_NAMESPACE, 'gw/lock')}"


@pytest.mark.parametrize(("gateway", "name"), [("", "x"), ("a/b", "x"), ("gw", "")])
def test_thing_id_refuses_ambiguous_inputs(gateway: str, name: str) -> None:
    with pytest.raises(WotError):
        thing_id(gateway, name)


# -- the directory TD -----------------------------------------------------------------------------


def test_directory_td() -> None:
    td = build_directory_td(
        gateway_id=GW, base_url=BASE + "/", title="Gateway directory", check=True
    )
    validate_td(td, require_op=True)
    validate_td_text(json.dumps(td), require_op=True)
    assert td["@context"][:2] == [
        "https://www.w3.org/2022/wot/td/v1.1",
        "https://www.w3.org/2022/wot/discovery",
    ]
    assert td["@type"] == "ThingDirectory"
    assert td["title"] == "Gateway directory"
    assert td["id"] == directory_id(GW)
    assert td["id"] != thing_id(GW, "directory")
    assert td["security"] == ["nosec_sc"]
    assert td["securityDefinitions"] == {"nosec_sc": {"scheme": "nosec"}}

    things = td["properties"]["things"]
    assert things["type"] == "array" and things["readOnly"] is True
    [form] = things["forms"]
    assert (form["op"], form["htv:methodName"]) == ("readproperty", "GET")
    assert urljoin(td["base"], form["href"]) == f"{BASE}/things"

    retrieve = td["actions"]["retrieveThing"]
    assert retrieve["uriVariables"]["id"]["type"] == "string"
    assert (retrieve["safe"], retrieve["idempotent"]) == (True, True)
    [form] = retrieve["forms"]
    assert (form["op"], form["htv:methodName"]) == ("invokeaction", "GET")
    assert urljoin(td["base"], form["href"]) == f"{BASE}/things/{{id}}"
    assert not [f for f in _all_forms(td) if "security" in f]


def test_directory_needs_a_title() -> None:
    with pytest.raises(WotError):
        build_directory_td(gateway_id=GW, base_url=BASE, title="", check=True)


# -- digest ---------------------------------------------------------------------------------------


def test_td_digest_recipe() -> None:
    td = {"title": "Café", "b": [1, 2.5], "a": {"y": True, "x": None}}
    canonical = '{"a":{"x":null,"y":true},"b":[1,2.5],"title":"Café"}'.encode()
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=")
    assert td_digest(td) == expected.decode()
    assert td_digest(dict(reversed(list(td.items())))) == td_digest(td)
    assert len(td_digest(td)) == 43 and "=" not in td_digest(td)


def test_td_digest_of_a_built_td_is_stable_and_sensitive() -> None:
    td = _lock_td()
    assert td_digest(td) == td_digest(_lock_td())
    assert td_digest(td) == td_digest(json.loads(json.dumps(td)))
    td["title"] = "Back door"
    assert td_digest(td) != td_digest(_lock_td())


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, {"x": "\ud800"}])
def test_td_digest_refuses_non_json(bad: dict[str, Any]) -> None:
    with pytest.raises(WotError):
        td_digest(bad)
