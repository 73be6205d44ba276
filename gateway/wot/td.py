"""Thing Descriptions (W3C WoT TD 1.1) of the gateway's Things and of its TD Directory.

Layout of a Thing's TD (`base` is `{base_url}/things/{thing}/`; every href is relative to it and
every form carries an explicit `op` and `"contentType": "application/json"`):

    properties/{p}           readproperty (GET); writeproperty (PUT) as a separate form if writable
    properties/{p}/observe   [observeproperty, unobserveproperty], subprotocol longpoll (node-wot)
    properties/{p}/sse       observeproperty, subprotocol sse
    actions/{a}              invokeaction (POST)
    events/{e}               [subscribeevent, unsubscribeevent], subprotocol longpoll (node-wot)
    events/{e}/sse           subscribeevent, subprotocol sse
    properties               Thing-level readallproperties (GET)

Security: one Thing-level scheme, `bearer_sc` (an ES256 JWT in the Authorization header, signed by
the consumer's own key), and no form-level `security` (a form-level entry breaks node-wot's bearer
credentials). Long-poll forms come first because node-wot uses the first matching form and cannot
send the bearer token over SSE (its EventSource sends no headers).

MQTT (W3C WoT MQTT binding, `mqv:` vocabulary), for Things the gateway also publishes on a broker
(`build_td(..., mqtt=MqttForms(broker_url, topic_prefix))`): after the HTTP forms, each property
gets a readproperty form and (if observable) an [observeproperty, unobserveproperty] form, each
event a [subscribeevent, unsubscribeevent] form. The href is absolute,
`mqtt[s]://host:port/{topic}` with the topic as its path (node-wot reads the topic only from
there), and the topic is repeated in `mqv:filter` (subscribe) and `mqv:topic` (where the gateway
publishes; property values are retained, `mqv:retain`). Topics: `{topic_prefix}/{thing}/
properties/{p}` and `{topic_prefix}/{thing}/events/{e}`. The broker account these need is
described by `mqtt_sc` in securityDefinitions; it is not named in any `security` (node-wot 0.9
uses only the Thing-level scheme and mishandles form-level credentials), so consumers give their
broker account to their MQTT client (node-wot: `MqttsClientFactory({username, password, ca})`).
Writes and actions stay on HTTP and P2P, where the owner's ACL decides and the audit records who.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from gateway.b64 import b64url_encode
from gateway.errors import WotError
from gateway.things.base import ActionSpec, EventSpec, PropertySpec, Thing

__all__ = [
    "BEARER_SCHEME",
    "CONTENT_TYPE",
    "MQTT_SCHEME",
    "MQV_CONTEXT",
    "TD_CONTEXT",
    "THING_ID_NAMESPACE",
    "MqttForms",
    "build_directory_td",
    "build_td",
    "directory_id",
    "td_digest",
    "thing_id",
]

TD_CONTEXT = "https://www.w3.org/2022/wot/td/v1.1"
DISCOVERY_CONTEXT = "https://www.w3.org/2022/wot/discovery"
CONTENT_TYPE = "application/json"
BEARER_SCHEME = "bearer_sc"
NOSEC_SCHEME = "nosec_sc"
MQTT_SCHEME = "mqtt_sc"
#: the namespace the W3C WoT MQTT binding template uses for its `mqv:` terms
MQV_CONTEXT = "http://www.example.org/mqtt-binding#"


@dataclass(frozen=True)
class MqttForms:
    """Where a Thing's properties and events are published: `broker_url` is `mqtt://host:port`
    or `mqtts://host:port` (as consumers reach the broker), `topic_prefix` has no leading or
    trailing "/" (the gateway uses `streembit/{gateway id}/things`)."""

    broker_url: str
    topic_prefix: str

    def topic(self, thing: str, kind: str, name: str) -> str:
        return f"{self.topic_prefix}/{thing}/{kind}/{name}"


#: Namespace of the name-based (version 5) UUIDs of Thing ids. Fixed forever: changing it changes
#: every Thing id, and node-wot keys credentials by id. It is uuid5(NAMESPACE_URL,
#: "https://github.com/streembit/thing-gateway/wot/thing-id"), written out as a constant.
THING_ID_NAMESPACE = uuid.UUID("1aa04c7d-da58-5f38-ac59-c90eb0291241")

#: JSON-LD prefixes of vocabularies that Things may use in `semantic_type` (e.g. "saref:Actuator");
#: a used prefix is declared in the TD's @context so the term expands to a real IRI.
SEMANTIC_PREFIXES: Mapping[str, str] = {
    "saref": "https://saref.etsi.org/core/",
    "sosa": "http://www.w3.org/ns/sosa/",
    "ssn": "http://www.w3.org/ns/ssn/",
    "om": "http://www.ontology-of-units-of-measure.org/resource/om-2/",
}


def thing_id(gateway_id: str, thing_name: str) -> str:
    """The stable id of a Thing: `urn:uuid:` + uuid5(THING_ID_NAMESPACE, "{gateway_id}/{name}").

    The same gateway id and Thing name always give the same URN (so consumers keep their
    credentials across restarts); another gateway gives another URN for the same name. The gateway
    id (an RFC 7638 thumbprint) may not contain "/", so the name is never ambiguous.
    """
    if not gateway_id or "/" in gateway_id:
        raise WotError(f"invalid gateway id {gateway_id!r}: empty or containing '/'")
    if not thing_name:
        raise WotError("a Thing name may not be empty")
    return f"urn:uuid:{uuid.uuid5(THING_ID_NAMESPACE, f'{gateway_id}/{thing_name}')}"


def directory_id(gateway_id: str) -> str:
    """The stable id of the gateway's TD Directory: uuid5 of "{gateway_id}#directory".

    It has no "/" so it can never equal the id of a Thing, whatever the Thing is called.
    """
    if not gateway_id or "/" in gateway_id:
        raise WotError(f"invalid gateway id {gateway_id!r}: empty or containing '/'")
    return f"urn:uuid:{uuid.uuid5(THING_ID_NAMESPACE, f'{gateway_id}#directory')}"


def td_digest(td: Mapping[str, Any]) -> str:
    """Base64url (no padding) SHA-256 of the TD's canonical JSON.

    Canonical JSON here: `json.dumps(td, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False)` encoded as UTF-8. This is not RFC 8785 (JCS): numbers
    keep Python's spelling (20.0 stays "20.0") and keys sort by code point, so a peer checking the
    digest must parse the TD and re-serialise it with this same recipe, not with JCS.
    """
    try:
        canonical = json.dumps(
            td, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError (lone surrogate) is a ValueError
        raise WotError(f"TD is not serialisable as JSON: {exc}") from exc
    digest = hashlib.sha256(canonical).digest()
    return b64url_encode(digest)


# -- building blocks ---------------------------------------------------------------------------


def _normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WotError(f"base_url must be an absolute http(s) URL, not {base_url!r}")
    if parts.query or parts.fragment:
        raise WotError(f"base_url may not have a query or fragment: {base_url!r}")
    return base_url.rstrip("/")


def _segment(name: str) -> str:
    """A name as one URL path segment (percent-encoded, no "/")."""
    if not name:
        raise WotError("an affordance or Thing name may not be empty")
    return quote(name, safe="")


def _plain(value: Any) -> Any:
    """A deep copy of a JSON-like value with every Mapping as a dict and every sequence a list."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _form(href: str, op: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"href": href, "op": op, "contentType": CONTENT_TYPE, **extra}


def _described(title: str, description: str) -> dict[str, Any]:
    out: dict[str, Any] = {"title": title}
    if description:
        out["description"] = description
    return out


def _context(
    semantic_type: str | None, *extra: str, terms_extra: Mapping[str, str] | None = None
) -> list[Any]:
    terms: dict[str, str] = {"@language": "en", **(terms_extra or {})}
    if semantic_type and ":" in semantic_type:
        prefix = semantic_type.split(":", 1)[0]
        if prefix in SEMANTIC_PREFIXES:
            terms[prefix] = SEMANTIC_PREFIXES[prefix]
    return [TD_CONTEXT, *extra, terms]


def _bearer_scheme(base_url: str) -> dict[str, Any]:
    return {
        "scheme": "bearer",
        "format": "jwt",
        "alg": "ES256",
        "in": "header",
        "authorization": base_url,
        "description": "ES256 JWT signed by the consumer's own key, which the owner's ACL names",
    }


def _checked_name(key: str, spec: PropertySpec | ActionSpec | EventSpec) -> str:
    if spec.name != key:
        raise WotError(f"affordance {key!r} is declared with a different name {spec.name!r}")
    return _segment(key)


def _mqtt_broker(broker_url: str) -> str:
    parts = urlsplit(broker_url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.netloc or parts.path not in ("", "/"):
        raise WotError(f"broker_url must be mqtt://host:port or mqtts://host:port: {broker_url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _mqtt_form(broker: str, topic: str, op: str | list[str], retain: bool) -> dict[str, Any]:
    if not topic or topic.startswith("/") or any(c in topic for c in "#+\0"):
        raise WotError(f"not a usable MQTT topic: {topic!r}")
    form = _form(f"{broker}/{quote(topic, safe='/')}", op)
    form.update({"mqv:filter": topic, "mqv:topic": topic, "mqv:controlPacket": "subscribe"})
    form.update({"mqv:qos": "1", "mqv:retain": retain})
    return form


def _mqtt_scheme(broker: str) -> dict[str, Any]:
    return {
        "scheme": "basic",
        "in": "auto",
        "description": f"an account on the MQTT broker {broker} (CONNECT user name and "
        "password) whose ACL lets it read these topics; give it to the MQTT client",
    }


def _property(key: str, spec: PropertySpec) -> dict[str, Any]:
    path = f"properties/{_checked_name(key, spec)}"
    forms = [_form(path, "readproperty", **{"htv:methodName": "GET"})]
    if not spec.read_only:
        forms.append(_form(path, "writeproperty", **{"htv:methodName": "PUT"}))
    if spec.observable:
        observe = ["observeproperty", "unobserveproperty"]
        forms.append(_form(f"{path}/observe", observe, subprotocol="longpoll"))
        forms.append(_form(f"{path}/sse", "observeproperty", subprotocol="sse"))
    entry: dict[str, Any] = _plain(spec.schema)
    entry.update(_described(spec.title, spec.description))
    entry.update(readOnly=spec.read_only, writeOnly=False, observable=spec.observable, forms=forms)
    return entry


def _action(key: str, spec: ActionSpec) -> dict[str, Any]:
    entry = _described(spec.title, spec.description)
    if spec.input is not None:
        entry["input"] = _plain(spec.input)
    if spec.output is not None:
        entry["output"] = _plain(spec.output)
    entry.update(
        safe=spec.safe,
        idempotent=spec.idempotent,
        forms=[
            _form(
                f"actions/{_checked_name(key, spec)}", "invokeaction", **{"htv:methodName": "POST"}
            )
        ],
    )
    return entry


def _event(key: str, spec: EventSpec) -> dict[str, Any]:
    path = f"events/{_checked_name(key, spec)}"
    entry = _described(spec.title, spec.description)
    if spec.data:
        entry["data"] = _plain(spec.data)
    entry["forms"] = [
        _form(path, ["subscribeevent", "unsubscribeevent"], subprotocol="longpoll"),
        _form(f"{path}/sse", "subscribeevent", subprotocol="sse"),
    ]
    return entry


# -- public builders ---------------------------------------------------------------------------


def build_td(
    thing: Thing,
    *,
    gateway_id: str,
    base_url: str,
    check: bool = False,
    mqtt: MqttForms | None = None,
) -> dict[str, Any]:
    """The TD 1.1 of one Thing served by this gateway at `{base_url}/things/{thing.name}/`.

    The result is a fresh plain dict (safe to mutate or serialise). With `check=True` it is
    checked with `validate_td(require_op=True)` (a Thing whose specs make an invalid TD raises
    WotError). The running gateway skips that check to keep the JSON Schema machinery (about
    8 MB) out of its memory; the test suite validates the TD of every Thing type and example.
    """
    base = _normalise_base_url(base_url)
    broker = _mqtt_broker(mqtt.broker_url) if mqtt is not None else None
    mqv = {"mqv": MQV_CONTEXT} if mqtt is not None else None
    td: dict[str, Any] = {"@context": _context(thing.semantic_type, terms_extra=mqv)}
    if thing.semantic_type:
        td["@type"] = thing.semantic_type
    td["id"] = thing_id(gateway_id, thing.name)
    td.update(_described(thing.title, thing.description))
    td["base"] = f"{base}/things/{_segment(thing.name)}/"
    td["securityDefinitions"] = {BEARER_SCHEME: _bearer_scheme(base)}
    if broker is not None:
        td["securityDefinitions"][MQTT_SCHEME] = _mqtt_scheme(broker)
    td["security"] = [BEARER_SCHEME]
    properties = {key: _property(key, spec) for key, spec in thing.properties.items()}
    actions = {key: _action(key, spec) for key, spec in thing.actions.items()}
    events = {key: _event(key, spec) for key, spec in thing.events.items()}
    if mqtt is not None and broker is not None:
        for key, spec in thing.properties.items():
            topic = mqtt.topic(thing.name, "properties", key)
            forms = properties[key]["forms"]
            forms.append(_mqtt_form(broker, topic, "readproperty", True))
            if spec.observable:
                forms.append(
                    _mqtt_form(broker, topic, ["observeproperty", "unobserveproperty"], True)
                )
        for key in thing.events:
            topic = mqtt.topic(thing.name, "events", key)
            events[key]["forms"].append(
                _mqtt_form(broker, topic, ["subscribeevent", "unsubscribeevent"], False)
            )
    if properties:
        td["properties"] = properties
    if actions:
        td["actions"] = actions
    if events:
        td["events"] = events
    if properties:
        td["forms"] = [_form("properties", "readallproperties", **{"htv:methodName": "GET"})]
    if check:
        _validate(td)
    return td


def build_directory_td(
    *, gateway_id: str, base_url: str, title: str, check: bool = False
) -> dict[str, Any]:
    """The TD of the gateway's TD Directory (served at /.well-known/wot), after the WoT Discovery
    Thing Model (directory.tm.jsonld), reduced to the read-only part the gateway offers:

        things         property, readproperty GET `{base_url}/things`: array of every TD
        retrieveThing  action, invokeaction GET `{base_url}/things/{id}` (uriVariables id): one TD

    Security: `nosec` at Thing level. Both operations are public on purpose, because discovery
    comes before credentials (node-wot's requestThingDescription fetches without any). A TD only
    describes a Thing; every interaction with it still needs the bearer JWT its own TD declares.
    Declaring bearer here instead would make node-wot refuse to read `things` without a token.
    """
    base = _normalise_base_url(base_url)
    if not title:
        raise WotError("the directory needs a title")
    id_variable = {
        "title": "Thing Description ID",
        "type": "string",
        "format": "iri-reference",
    }
    td: dict[str, Any] = {
        "@context": _context(None, DISCOVERY_CONTEXT),
        "@type": "ThingDirectory",
        "id": directory_id(gateway_id),
        "title": title,
        "description": "Thing Descriptions of the Things this Streembit gateway exposes",
        "base": f"{base}/",
        "securityDefinitions": {NOSEC_SCHEME: {"scheme": "nosec"}},
        "security": [NOSEC_SCHEME],
        "properties": {
            "things": {
                "title": "Things",
                "description": "Retrieve all Thing Descriptions",
                "type": "array",
                "items": {"type": "object"},
                "readOnly": True,
                "writeOnly": False,
                "observable": False,
                "forms": [_form("things", "readproperty", **{"htv:methodName": "GET"})],
            }
        },
        "actions": {
            "retrieveThing": {
                "title": "Retrieve a Thing",
                "description": "Retrieve a Thing Description by its id",
                "uriVariables": {"id": id_variable},
                "output": {"description": "The Thing Description", "type": "object"},
                "safe": True,
                "idempotent": True,
                "forms": [_form("things/{id}", "invokeaction", **{"htv:methodName": "GET"})],
            }
        },
    }
    if check:
        _validate(td)
    return td


def _validate(td: dict[str, Any]) -> None:
    from gateway.wot.validate import validate_td  # imported on demand: jsonschema is large

    validate_td(td, require_op=True)
