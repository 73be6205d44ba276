"""Validation of W3C WoT Thing Descriptions (TD 1.1).

A TD is checked against the official TD 1.1 JSON Schema (a verbatim copy packaged in
`gateway/wot/schema/`, draft-07, compiled once) and then against what that schema cannot express:

- duplicate JSON member names anywhere (only visible in the text: use `validate_td_text`);
- security names used at Thing level, in forms or in combo schemes that are not defined in
  `securityDefinitions`;
- more than one link with `"rel": "type"`;
- Thing Model leftovers: `tm:*` members (tm:ref, tm:required, tm:optional ...), `{{placeholder}}`
  strings, `"@type": "tm:ThingModel"`, links with `"rel": "tm:extends"`;
- data schemas that contradict themselves: `enum`, `const` or `default` values of another JSON type
  than the declared `type`, and `minimum > maximum` (likewise for lengths and item counts);
- optionally (`require_op=True`, used for the gateway's own TDs): every form has an explicit `op`.

The schema's `format` keywords are checked for the two formats it uses at Thing level:
`uri` (`id`; an absolute URI/IRI: a scheme, then no whitespace or characters URIs exclude) and
`date-time` (`created`, `modified`; RFC 3339). Both are implemented here so the result does not
depend on which optional format packages happen to be installed.

Every problem is reported with the JSON Pointer of the offending member; `TdValidationError` (a
`WotError`) carries them all in `.problems`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, TypeGuard, cast

from gateway.errors import WotError
from gateway.extras import MissingExtraError

try:  # the `td-validation` extra: only the tests and Python API callers validate TDs
    from jsonschema import Draft7Validator, FormatChecker
    from jsonschema.exceptions import ValidationError, best_match
    from jsonschema.validators import extend
except ImportError:
    raise MissingExtraError("td-validation", ["jsonschema"]) from None

from gateway.jsonsafe import JsonInputError, check_tree
from gateway.wot.jsonparse import TD_LIMITS, Problem, loads_strict, pointer

__all__ = [
    "SCHEMA_FILE",
    "TdValidationError",
    "td_problems",
    "validate_td",
    "validate_td_text",
]

SCHEMA_FILE = "td-json-schema-validation.json"
_MAX_SHOWN = 20  # problems listed in the exception message (all are in .problems)
_MAX_MESSAGE = 240  # characters of one schema message (they may quote whole sub-documents)
# The schema's unanchored patterns (".+:.*" for a security scheme, "[0-9]*x[0-9]+" for icon
# sizes) take quadratic time in `re.search`: 2.5 s on a 60 KB string. Every string they apply to
# is a short token, so longer strings are refused without running the regex.
MAX_PATTERN_INPUT = 256

JsonPath = tuple[str | int, ...]


class TdValidationError(WotError):
    """A Thing Description is invalid; `problems` lists every reason with its JSON Pointer."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        count = len(self.problems)
        lines = [f"- {p}" for p in self.problems[:_MAX_SHOWN]]
        if count > _MAX_SHOWN:
            lines.append(f"- ... and {count - _MAX_SHOWN} more")
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"invalid Thing Description ({count} {noun}):\n" + "\n".join(lines))


# -- the JSON Schema ---------------------------------------------------------------------------

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s\"<>\\^`{|}\x00-\x1f\x7f]*")
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))"
)


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or _URI.fullmatch(value) is not None


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        datetime(year, month, day, hour, minute, min(second, 59))  # 60: a leap second
    except ValueError:
        return False
    offset_ok = match.group(9) is None or (int(match.group(9)) < 24 and int(match.group(10)) < 60)
    return second <= 60 and offset_ok


def _bounded_pattern(
    validator: Any, patrn: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """The schema's `pattern` keyword, refusing strings over MAX_PATTERN_INPUT before the regex."""
    if not isinstance(instance, str):
        return
    if len(instance) > MAX_PATTERN_INPUT:
        yield ValidationError(
            f"a string of {len(instance)} characters is longer than the "
            f"{MAX_PATTERN_INPUT} allowed where {patrn!r} applies"
        )
    elif re.search(patrn, instance) is None:
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


_TdValidator = extend(Draft7Validator, {"pattern": _bounded_pattern})


@cache
def _validator() -> Draft7Validator:
    """The TD 1.1 schema validator, loaded from the package and compiled once."""
    source = resources.files("gateway.wot").joinpath("schema").joinpath(SCHEMA_FILE)
    schema = json.loads(source.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    formats = FormatChecker(formats=())
    formats.checks("uri")(_is_uri)
    formats.checks("date-time")(_is_date_time)
    return cast(Draft7Validator, _TdValidator(schema, format_checker=formats))


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _schema_problem(error: ValidationError) -> Problem:
    """One readable problem for a schema error; oneOf/anyOf errors explained by their branches."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return Problem(pointer(error.absolute_path), _shorten(error.message))
    # Branches that fail on the instance's JSON type alone explain least (e.g. "is not of type
    # 'string'" for an `op` array): drop them, then explain with the deepest remaining errors.
    wrong_type = {
        e.relative_schema_path[0]
        for e in error.context
        if e.validator == "type" and e.absolute_path == error.absolute_path
    }
    informative = [e for e in error.context if e.relative_schema_path[0] not in wrong_type]
    if not informative:
        best = best_match(error.context)
        return Problem(
            pointer(error.absolute_path),
            _shorten(f"matches none of the allowed forms; closest: {best.message}"),
        )
    depth = max(len(e.absolute_path) for e in informative)
    deepest = [e for e in informative if len(e.absolute_path) == depth]
    allowed = [v for e in deepest if e.validator == "enum" for v in e.validator_value]
    allowed += [e.validator_value for e in deepest if e.validator == "const"]
    if len(deepest) > 1 and allowed:
        # A discriminator such as a security scheme's "scheme": merge what the branches allow.
        patterns = [e.validator_value for e in deepest if e.validator == "pattern"]
        also = "".join(f" nor matches {p!r}" for p in patterns)
        message = f"{deepest[0].instance!r} is none of {allowed!r}{also}"
        return Problem(pointer(deepest[0].absolute_path), _shorten(message))
    return _schema_problem(best_match(deepest))


def _schema_problems(td: Any) -> Iterator[Problem]:
    for error in _validator().iter_errors(td):
        yield _schema_problem(error)


# -- helpers to walk a TD ----------------------------------------------------------------------

_AFFORDANCE_KINDS = ("properties", "actions", "events")


def _affordances(td: Mapping[str, Any]) -> Iterator[tuple[JsonPath, Mapping[str, Any]]]:
    for kind in _AFFORDANCE_KINDS:
        group = td.get(kind)
        if isinstance(group, Mapping):
            for name, affordance in group.items():
                if isinstance(affordance, Mapping):
                    yield (kind, name), affordance


def _forms(td: Mapping[str, Any]) -> Iterator[tuple[JsonPath, Mapping[str, Any], bool]]:
    """Every form: (path, form, is_thing_level)."""
    containers: list[tuple[JsonPath, Mapping[str, Any], bool]] = [((), td, True)]
    containers.extend((path, aff, False) for path, aff in _affordances(td))
    for path, container, top in containers:
        forms = container.get("forms")
        if isinstance(forms, list):
            for index, form in enumerate(forms):
                if isinstance(form, Mapping):
                    yield (*path, "forms", index), form, top


def _names(value: Any) -> list[tuple[JsonPath, str]]:
    """Security names of a `security` member (a string or a list of strings), with sub-paths."""
    if isinstance(value, str):
        return [((), value)]
    if isinstance(value, list):
        return [((i,), v) for i, v in enumerate(value) if isinstance(v, str)]
    return []


# -- checks the schema misses ------------------------------------------------------------------


def _check_security(td: Mapping[str, Any]) -> Iterator[Problem]:
    defs = td.get("securityDefinitions")
    defined = set(defs) if isinstance(defs, Mapping) else set()
    uses: list[tuple[JsonPath, Any]] = [(("security",), td.get("security"))]
    uses.extend(((*path, "security"), form.get("security")) for path, form, _ in _forms(td))
    if isinstance(defs, Mapping):
        for name, scheme in defs.items():
            if isinstance(scheme, Mapping) and scheme.get("scheme") == "combo":
                for key in ("oneOf", "allOf"):
                    uses.append((("securityDefinitions", name, key), scheme.get(key)))
    for path, value in uses:
        for sub, name in _names(value):
            if name not in defined:
                yield Problem(
                    pointer((*path, *sub)),
                    f"security scheme {name!r} is not defined in securityDefinitions",
                )


def _check_links(td: Mapping[str, Any]) -> Iterator[Problem]:
    links = td.get("links")
    if not isinstance(links, list):
        return
    typed = [
        i for i, link in enumerate(links) if isinstance(link, Mapping) and link.get("rel") == "type"
    ]
    for index in typed[1:]:
        yield Problem(
            pointer(("links", index, "rel")),
            'more than one link with "rel": "type" (a TD has at most one Thing Model type)',
        )


_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")


def _walk(value: Any, path: JsonPath = ()) -> Iterator[tuple[JsonPath, Any]]:
    """Every (path, value) in a JSON document, depth first, the root included."""
    stack: list[tuple[JsonPath, Any]] = [(path, value)]
    while stack:
        here, node = stack.pop()
        yield here, node
        if isinstance(node, Mapping):
            stack.extend(((*here, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*here, i), v) for i, v in reversed(list(enumerate(node))))


def _check_thing_model(td: Mapping[str, Any]) -> Iterator[Problem]:
    for path, node in _walk(td):
        if isinstance(node, Mapping):
            for key in node:
                if isinstance(key, str) and key.startswith("tm:"):
                    yield Problem(
                        pointer((*path, key)),
                        f"Thing Model term {key!r} is not allowed in a Thing Description",
                    )
        elif isinstance(node, str):
            placeholder = _PLACEHOLDER.search(node)
            if placeholder is not None:
                yield Problem(
                    pointer(path),
                    f"unresolved Thing Model placeholder {placeholder.group(0)!r}",
                )
            in_type = "@type" in path[-2:]
            if in_type and node == "tm:ThingModel":
                yield Problem(pointer(path), "a Thing Model, not a Thing Description")
    links = td.get("links")
    if isinstance(links, list):
        for index, link in enumerate(links):
            if isinstance(link, Mapping) and link.get("rel") == "tm:extends":
                yield Problem(
                    pointer(("links", index, "rel")),
                    '"rel": "tm:extends" belongs in a Thing Model, not a Thing Description',
                )


def _check_ops(td: Mapping[str, Any]) -> Iterator[Problem]:
    for path, form, _ in _forms(td):
        if "op" not in form:
            yield Problem(pointer(path), "form has no explicit 'op'")


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "boolean": (bool,),
    "integer": (int, float),
    "number": (int, float),
    "string": (str,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _has_type(value: Any, typ: str) -> bool:
    kinds = _JSON_TYPES.get(typ)
    if kinds is None:
        return True  # an unknown type is the schema's business
    if typ in ("integer", "number") and isinstance(value, bool):
        return False
    if typ == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, kinds)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_BOUNDS = (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems"))


def _check_one_schema(path: JsonPath, schema: Mapping[str, Any]) -> Iterator[Problem]:
    typ = schema.get("type")
    if isinstance(typ, str):
        candidates: list[tuple[JsonPath, Any]] = []
        for key in ("const", "default"):
            if key in schema:
                candidates.append(((key,), schema[key]))
        enum = schema.get("enum")
        if isinstance(enum, list):
            candidates.extend((("enum", i), v) for i, v in enumerate(enum))
        for sub, value in candidates:
            if not _has_type(value, typ):
                yield Problem(
                    pointer((*path, *sub)),
                    _shorten(f"{json.dumps(value)} is not of the declared type {typ!r}"),
                )
    for low, high in _BOUNDS:
        lo, hi = schema.get(low), schema.get(high)
        if _is_number(lo) and _is_number(hi) and lo > hi:
            yield Problem(pointer((*path, low)), f"{low} {lo} is greater than {high} {hi}")


def _data_schemas(path: JsonPath, schema: Any) -> Iterator[tuple[JsonPath, Mapping[str, Any]]]:
    """A data schema and every data schema nested in it (properties, items, oneOf)."""
    stack: list[tuple[JsonPath, Any]] = [(path, schema)]
    while stack:
        here, node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        yield here, node
        members = node.get("properties")
        if isinstance(members, Mapping):
            stack.extend(((*here, "properties", k), v) for k, v in members.items())
        items = node.get("items")
        if isinstance(items, list):
            stack.extend(((*here, "items", i), v) for i, v in enumerate(items))
        elif isinstance(items, Mapping):
            stack.append(((*here, "items"), items))
        alternatives = node.get("oneOf")
        if isinstance(alternatives, list):
            stack.extend(((*here, "oneOf", i), v) for i, v in enumerate(alternatives))


def _check_data_schemas(td: Mapping[str, Any]) -> Iterator[Problem]:
    roots: list[tuple[JsonPath, Any]] = []
    for key in ("uriVariables", "schemaDefinitions"):
        group = td.get(key)
        if isinstance(group, Mapping):
            roots.extend(((key, name), s) for name, s in group.items())
    for path, affordance in _affordances(td):
        if path[0] == "properties":
            roots.append((path, affordance))  # a property affordance is itself a data schema
        for key in ("input", "output", "data", "subscription", "cancellation", "dataResponse"):
            if key in affordance:
                roots.append(((*path, key), affordance[key]))
        variables = affordance.get("uriVariables")
        if isinstance(variables, Mapping):
            roots.extend(((*path, "uriVariables", n), s) for n, s in variables.items())
    for root_path, root in roots:
        for path, schema in _data_schemas(root_path, root):
            yield from _check_one_schema(path, schema)


# -- public API --------------------------------------------------------------------------------


def td_problems(td: Any, *, require_op: bool = False) -> list[Problem]:
    """Every problem of a parsed TD (no duplicate-key check: that needs the text), sorted."""
    if not isinstance(td, dict):
        return [Problem("", "a Thing Description must be a JSON object")]
    try:  # the schema validator recurses: bound the depth (and numbers, text) first
        check_tree(td, TD_LIMITS, what="the TD")
    except JsonInputError as exc:
        return [Problem(pointer(exc.path), str(exc))]
    problems = set(_schema_problems(td))
    problems.update(_check_security(td))
    problems.update(_check_links(td))
    problems.update(_check_thing_model(td))
    problems.update(_check_data_schemas(td))
    if require_op:
        problems.update(_check_ops(td))
    return sorted(problems)


def validate_td(td: Any, *, require_op: bool = False) -> None:
    """Check a parsed TD (a dict); raise TdValidationError (a WotError) listing every problem.

    `require_op=True` also demands an explicit `op` on every form (the gateway's own TDs).
    """
    problems = td_problems(td, require_op=require_op)
    if problems:
        raise TdValidationError(problems)


def validate_td_text(text: str, *, require_op: bool = False) -> dict[str, Any]:
    """Parse and check a TD given as JSON text (duplicate keys included); return the TD.

    Raises TdValidationError (a WotError) listing every problem, or WotError if the text is not
    JSON at all.
    """
    value, duplicates = loads_strict(text)
    problems = sorted({*duplicates, *td_problems(value, require_op=require_op)})
    if problems:
        raise TdValidationError(problems)
    return cast(dict[str, Any], value)  # td_problems reported anything but an object
