"""The Thing model: affordance specs (from which TDs are built) and the async Thing interface.

A Thing owns its safety logic; bindings never touch drivers directly. Every mutating call carries
the `actor` (the requester's id) so events and the audit log say who did it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gateway.errors import ThingError
from gateway.things.bus import Bus


@dataclass(frozen=True)
class PropertySpec:
    name: str
    title: str
    schema: Mapping[
        str, Any
    ]  # JSON-Schema subset used in the TD: type, unit, minimum, maximum, enum
    read_only: bool = True
    observable: bool = True
    description: str = ""
    resolution: float | None = None  # a measured value's step; reported values are rounded to it


@dataclass(frozen=True)
class ActionSpec:
    name: str
    title: str
    input: Mapping[str, Any] | None = None
    output: Mapping[str, Any] | None = None
    safe: bool = False
    idempotent: bool = False
    description: str = ""


@dataclass(frozen=True)
class EventSpec:
    name: str
    title: str
    data: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


def check_value(schema: Mapping[str, Any], value: Any, what: str) -> Any:
    """Validate an untrusted JSON value against a small schema; return it (ints widened to float
    for `number`). Raises ThingError with code invalid_input or out_of_range."""
    typ = schema.get("type")
    if typ == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ThingError(f"{what} must be a number", code="invalid_input")
        value = float(value)
        if not math.isfinite(value):
            raise ThingError(f"{what} must be finite", code="invalid_input")
    elif typ == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ThingError(f"{what} must be an integer", code="invalid_input")
    elif typ == "boolean":
        if not isinstance(value, bool):
            raise ThingError(f"{what} must be true or false", code="invalid_input")
    elif typ == "string":
        if not isinstance(value, str):
            raise ThingError(f"{what} must be a string", code="invalid_input")
    elif typ == "null":
        if value is not None:
            raise ThingError(f"{what} takes no input", code="invalid_input")
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(map(str, schema["enum"]))
        raise ThingError(f"{what} must be one of: {allowed}", code="invalid_input")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and value < lo:
        raise ThingError(f"{what} {value} is below the minimum {lo}", code="out_of_range")
    if hi is not None and value > hi:
        raise ThingError(f"{what} {value} is above the maximum {hi}", code="out_of_range")
    return value


class Thing(abc.ABC):
    """A device exposed as a WoT Thing. Subclasses declare their affordances and safety logic."""

    type_name: ClassVar[str] = "thing"
    semantic_type: ClassVar[str | None] = None  # extra TD @type (e.g. "saref:Actuator")

    def __init__(self, name: str, title: str, description: str = "") -> None:
        self.name = name
        self.title = title
        self.description = description
        self.bus = Bus(name)

    # -- affordances (static per instance; the TD is built from them)
    @property
    @abc.abstractmethod
    def properties(self) -> Mapping[str, PropertySpec]: ...

    @property
    def actions(self) -> Mapping[str, ActionSpec]:
        return {}

    @property
    def events(self) -> Mapping[str, EventSpec]:
        return {}

    # -- lifecycle
    @abc.abstractmethod
    async def start(self) -> None:
        """Bring the driver up and put the device in its safe state (locked, heater off)."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Put the device in its safe state and stop the driver. Never raises."""

    def safe_state_problem(self) -> str | None:
        """After stop(): why the device is not confirmed in its safe state (None: it is, or it
        has none, like a sensor)."""
        return None

    # -- interactions (names already checked to exist by the caller is NOT assumed)
    @abc.abstractmethod
    async def read_property(self, name: str) -> Any: ...

    async def write_property(self, name: str, value: Any, actor: str) -> None:
        spec = self._prop(name)
        if spec.read_only:
            raise ThingError(f"property {name!r} is read-only", code="read_only")
        raise ThingError(f"property {name!r} cannot be written", code="read_only")

    async def invoke_action(self, name: str, value: Any, actor: str) -> Any:
        raise ThingError(f"no action {name!r} on {self.name!r}", code="unknown_affordance")

    # -- helpers
    def _prop(self, name: str) -> PropertySpec:
        spec = self.properties.get(name)
        if spec is None:
            raise ThingError(f"no property {name!r} on {self.name!r}", code="unknown_affordance")
        return spec

    def _action(self, name: str) -> ActionSpec:
        spec = self.actions.get(name)
        if spec is None:
            raise ThingError(f"no action {name!r} on {self.name!r}", code="unknown_affordance")
        return spec

    def changed(self, prop: str, value: Any) -> None:
        """Publish a property change to observers."""
        self.bus.publish("property", prop, value)

    def emit(self, event: str, data: Any) -> None:
        self.bus.publish("event", event, data)
