"""Every parser is total: the bounded JSON policy, and a short seeded fuzz of every parser that
reads peer, owner, board or file input (bench/fuzz.py runs the long one)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gateway.acl import Acl
from gateway.errors import AclError, MessageError, StreembitError
from gateway.identity import generate_keypair
from gateway.jsonsafe import JsonInputError, JsonLimits, check_tree, loads, loads_object
from gateway.wot.validate import MAX_PATTERN_INPUT, td_problems
from tests.fuzz.engine import run
from tests.fuzz.targets import NOW, Target, make_targets
from tests.test_companion_micropython import CLIENT, run_mp

BUDGET = 1500  # inputs per parser on every CI run (bench/fuzz.py: 1 000 000 in all)
MP_FUZZ = Path(__file__).parent / "fuzz" / "mp_frames.py"


# -- the policy ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"[" * 3000 + b"]" * 3000, "too_deep"),
        (b"[" * 33 + b"]" * 33, "too_deep"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "too_deep"),
        (b"9" * 5000, "long_number"),
        (b"-" + b"1" * 400 + b".0", "long_number"),
        (str(2**64).encode(), "long_number"),
        (b"1e400", "non_finite"),
        (b"-1E+999", "non_finite"),
        (b"NaN", "non_finite"),
        (b"[-Infinity]", "non_finite"),
        (b'{"a":1,"a":2}', "duplicate_key"),
        (b'["\\ud800"]', "bad_string"),
        (b'{"\\udfff":1}', "bad_string"),
        (b"\xff", "not_utf8"),
        (b"[1,]", "syntax"),
        (b"", "syntax"),
        (b" " * 70_000, "too_large"),
    ],
)
def test_policy_refuses_with_the_bound_it_hit(text: bytes, problem: str) -> None:
    with pytest.raises(JsonInputError) as info:
        loads(text)
    assert info.value.problem == problem and isinstance(info.value, StreembitError)


def test_policy_accepts_plain_json_and_keeps_its_values() -> None:
    doc = {"a": [1, -2.5, "x\u00e9\U0001f600", None, True, {"b": {}}], "n": 2**63 - 1}
    assert loads(json.dumps(doc)) == doc
    assert loads(b"[" * 32 + b"]" * 32) is not None  # exactly the default depth
    assert loads(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate *pair* is text
    assert loads(b'{"a":1,"a":2}', JsonLimits(duplicates=True)) == {"a": 2}
    with pytest.raises(JsonInputError) as info:
        loads_object(b"[1]")
    assert info.value.problem == "not_object"


def test_check_tree_names_the_path_of_what_it_refuses() -> None:
    with pytest.raises(JsonInputError) as info:
        check_tree({"things": [{"safety": {"max": math.inf}}]})
    assert info.value.path == ("things", 0, "safety", "max")
    with pytest.raises(JsonInputError) as info:
        check_tree({"a": [[[]]]}, JsonLimits(max_depth=3))
    assert info.value.problem == "too_deep" and info.value.path == ("a", 0, 0)


# -- per-layer codes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    return {t.name: t for t in make_targets(tmp_path_factory.mktemp("fuzz"))}


@pytest.mark.parametrize("value", [b"1e400", b"NaN", b"9" * 5000, b"[" * 3000])
def test_sealed_claims_with_hostile_numbers_or_nesting_are_bad_format(
    targets: dict[str, Target], value: bytes
) -> None:
    t = targets["sealed/claims"]
    claims = t.seeds[1][:-1] + b',"x":' + value + b"}"
    with pytest.raises(MessageError) as info:
        t.parse(t.build(claims))
    assert info.value.code == "bad_format"
    t.parse(t.build(t.seeds[1]))  # the sample itself opens


def _acl_json(**grant_over: Any) -> dict[str, Any]:
    kp = generate_keypair()
    grant = {"sub": kp.id, "jwk": dict(kp.public.jwk), "things": ["front-door"],
             "ops": ["readproperty"], **grant_over}  # fmt: skip
    return {"gateway": "gw", "version": 1, "iat": NOW, "grants": [grant]}


@pytest.mark.parametrize(
    "over",
    [
        {"role": []},
        {"role": {}},
        {"role": 1},
        {"role": None},
        {"things": [[]]},
        {"things": "front-door"},
        {"ops": [{}]},
        {"nbf": "1"},
        {"nbf": 1.5},
        {"exp": True},
        {"schedule": []},
        {"schedule": 5},
        {"jwk": []},
        {"jwk": {"kty": "EC", "crv": "P-256", "x": [], "y": {}}},
        {"sub": []},
        {"affordances": [None]},
    ],
)
def test_every_grant_field_is_type_checked(over: dict[str, Any]) -> None:
    with pytest.raises(AclError) as info:
        Acl.from_json(_acl_json(**over))
    assert info.value.code == "acl_malformed"


@pytest.mark.parametrize("tz", ["Europe", "a" * 5000, "../etc/passwd", "UTC\x00", [], 5, ""])
def test_acl_time_zone_must_be_a_zone_name(tz: Any) -> None:
    doc = _acl_json()
    doc["tz"] = tz
    with pytest.raises(AclError) as info:
        Acl.from_json(doc)
    assert info.value.code == "acl_malformed"


def test_long_strings_under_the_schema_patterns_are_refused_not_searched(
    targets: dict[str, Target],
) -> None:
    td = json.loads(targets["wot/td"].seeds[0])
    td["links"] = [{"href": "icon.png", "rel": "icon", "sizes": "1" * 60_000}]
    td["securityDefinitions"]["x"] = {"scheme": "a" * 60_000}
    problems = td_problems(td)  # 2.5 s before the bound (bench/fuzz.py --only td shows times)
    bounded = {p.pointer for p in problems if f"{MAX_PATTERN_INPUT} allowed" in p.message}
    assert bounded == {"/links/0/sizes"}, problems
    # the scheme is checked in a oneOf: its problem merges the branches, one of them the bound
    assert any(p.pointer.startswith("/securityDefinitions/x") for p in problems), problems


def test_td_nesting_is_bounded_before_the_schema_validator_recurses(
    targets: dict[str, Target],
) -> None:
    td = json.loads(targets["wot/td"].seeds[0])
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"a": schema}}
    next(iter(td["properties"].values()))["properties"] = {"a": schema}
    (problem,) = td_problems(td)
    assert "nesting deeper than" in problem.message


# -- the fuzz --------------------------------------------------------------------------------
with tempfile.TemporaryDirectory() as _work:
    NAMES = [t.name for t in make_targets(Path(_work))]


@pytest.mark.parametrize("name", NAMES)
def test_short_fuzz_finds_no_crash(targets: dict[str, Target], name: str) -> None:
    result = run(targets[name], BUDGET, seed=1)
    assert not result.crashes, "\n".join(str(c) for c in result.crashes.values())
    assert result.inputs > BUDGET * 0.8  # the rest could not be built (too large to sign)
    accepted = result.inputs - result.refused
    assert accepted >= 1, "the samples themselves must parse"
    assert result.refused > BUDGET * 0.3, "the mutations must reach the parser's refusals"


def test_fuzz_is_deterministic(targets: dict[str, Target]) -> None:
    a = run(targets["acl/signed-payload"], 200, seed=7)
    b = run(targets["acl/signed-payload"], 200, seed=7)
    assert (a.inputs, a.refused) == (b.inputs, b.refused)


def test_board_side_fuzz_under_the_micropython_interpreter() -> None:
    out = run_mp(str(MP_FUZZ), libs=(CLIENT,))
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result["inputs"] >= 2000 and 0 < result["refused"] < result["inputs"]
