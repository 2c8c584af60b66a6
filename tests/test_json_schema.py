"""Tests for JSON-schema dict validation behind ``parse_json(schema={...})``: complete values and prefix states."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any, cast

import jsonschema.validators
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema.validators import Draft7Validator, Draft202012Validator

from rxstream.operators._json_partial import PartialJsonParser, apply
from rxstream.operators._json_schema import SchemaViolation, _SchemaRewriter, compile_json_schema  # pyright: ignore[reportPrivateUsage]

Validator = Callable[[Any], Any]

# -- the schemas -------------------------------------------------------------------------------

ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "note": True,
        "id": {"type": "integer"},
        "customer": {"$ref": "#/$defs/customer"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 1},
        "status": {"enum": ["pending", "paid"]},
        "required": {"type": "boolean"},  # a property *named* required
        "legacy": False,
    },
    "required": ["id", "customer", "items", "status", "required"],
    "additionalProperties": False,
    "$defs": {
        "customer": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "email": {"type": "string", "format": "email"}},
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "item": {
            "type": "object",
            "properties": {
                "sku": {"type": "string"},
                "qty": {"type": "integer", "minimum": 1},
                "price": {"type": "number"},
            },
            "required": ["sku", "qty", "price"],
            "additionalProperties": False,
            "minProperties": 3,
        },
    },
}
# Optional keys first: cutting trailing keys always drops a required one.
ORDER: dict[str, Any] = {
    "note": {"gift": True},
    "id": 1234,
    "customer": {"name": "Ada", "email": "ada@example.com"},
    "items": [
        {"sku": "A-1", "qty": 2, "price": 9.5},
        {"sku": "B-22", "qty": 13, "price": 120},
    ],
    "status": "pending",
    "required": True,
}

TREE_SCHEMA: dict[str, Any] = {
    "$ref": "#/$defs/node",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value", "children"],
            "additionalProperties": False,
        }
    },
}
TREE: dict[str, Any] = {
    "value": 10,
    "children": [
        {"value": 11, "children": []},
        {"value": 12, "children": [{"value": 121, "children": []}, {"value": 122, "children": []}]},
    ],
}

DRAFT7_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "definitions": {
        "point": {
            "type": "array",
            "items": [{"type": "number"}, {"type": "number"}],
            "additionalItems": False,
            "minItems": 2,
        }
    },
    "properties": {
        "origin": {"$ref": "#/definitions/point"},
        "card": {"type": "string"},
        "billing": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "contains": {"const": "main"}},
    },
    "required": ["origin", "tags"],
    "dependencies": {
        "card": ["billing"],
        "billing": {"properties": {"card": {"type": "string"}}, "required": ["card"]},
    },
}
DRAFT7: dict[str, Any] = {"card": "4242", "billing": "Paris", "origin": [1.5, -2], "tags": ["main", "x"]}

# Every relaxation at work, and no constraint on string or number contents: every prefix
# state of SOUND passes validate_partial, whatever the cut.
SOUND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tree": {"$ref": "#/$defs/node"},
        "tags": {
            "type": "array",
            "items": {"type": "string"},
            "uniqueItems": True,
            "contains": {"type": "string"},
            "minContains": 2,
            "minItems": 2,
        },
        "shape": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"r": {"type": "number"}},
                    "required": ["r"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"w": {"type": "number"}, "h": {"type": "number"}},
                    "required": ["w", "h"],
                    "additionalProperties": False,
                },
            ]
        },
        "pay": {
            "type": "object",
            "properties": {
                "card": {"type": "string"},
                "cash": {"type": "number"},
                "holder": {"type": "string"},
            },
            "not": {"required": ["card", "cash"]},
            "minProperties": 2,
            "dependentRequired": {"card": ["holder"]},
        },
        "kind": {"type": "string"},
        "legacy": False,
    },
    "required": ["tree", "tags", "shape", "pay", "kind"],
    "additionalProperties": False,
    # The key deciding the branch streams last.
    "if": {"properties": {"kind": {"const": "circle"}}, "required": ["kind"]},
    "then": {"properties": {"shape": {"properties": {"w": False}}}},
    "else": {"properties": {"shape": {"properties": {"r": False}}}},
    "$defs": {"node": TREE_SCHEMA["$defs"]["node"]},
}
SOUND: dict[str, Any] = {
    "tree": TREE,
    "tags": ["ab", "abc", "x y"],
    "shape": {"w": 2.25, "h": 30},
    "pay": {"card": "4242", "holder": "Ada"},
    "kind": "square",
}

BAD_TREE: dict[str, Any] = {
    "value": 1,
    "children": [{"value": 2, "children": [{"value": 3, "children": []}, {"value": "4", "children": []}]}],
}

CASES = [
    pytest.param(ORDER_SCHEMA, ORDER, id="order"),
    pytest.param(TREE_SCHEMA, TREE, id="tree"),
    pytest.param(DRAFT7_SCHEMA, DRAFT7, id="draft7"),
    pytest.param(SOUND_SCHEMA, SOUND, id="sound"),
]


# -- helpers -----------------------------------------------------------------------------------


def structural_prefixes(value: Any) -> list[Any]:
    """Every state of ``value`` while it streams, cut between tokens: trailing keys or elements
    dropped at every depth, the last one kept possibly cut itself. The last state is ``value``."""
    if isinstance(value, dict):
        entries = list(cast(dict[str, Any], value).items())
        states: list[Any] = []
        for i in range(len(entries) + 1):
            head = dict(entries[:i])
            states.append(head)
            if i < len(entries):
                key, child = entries[i]
                states += [{**head, key: p} for p in structural_prefixes(child)[:-1]]
        return states
    if isinstance(value, list):
        elements = cast(list[Any], value)
        states = []
        for i in range(len(elements) + 1):
            head_list = elements[:i]
            states.append(head_list)
            if i < len(elements):
                states += [[*head_list, p] for p in structural_prefixes(elements[i])[:-1]]
        return states
    return [value]


def drops_a_key(prefix: Any, full: Any) -> bool:
    """Whether some object in ``prefix`` lacks keys its counterpart in ``full`` has."""
    if isinstance(full, dict):
        whole = cast(dict[str, Any], full)
        part = cast(dict[str, Any], prefix)
        return len(part) < len(whole) or any(drops_a_key(part[k], whole[k]) for k in part)
    if isinstance(full, list):
        return any(
            drops_a_key(p, f) for p, f in zip(cast(list[Any], prefix), cast(list[Any], full), strict=False)
        )
    return False


def parser_states(text: str, cuts: list[int]) -> list[Any]:
    """The values PartialJsonParser shows after each fragment of ``text`` cut at ``cuts``,
    rebuilt with ``apply`` and checked against ``snapshot()``."""
    parser = PartialJsonParser()
    rebuilt: Any = None
    states: list[Any] = []
    bounds = [0, *sorted(set(cuts)), len(text)]
    for start, end in itertools.pairwise(bounds):
        if start == end:
            continue
        for change in parser.feed(text[start:end]):
            rebuilt = apply(rebuilt, change)
        assert rebuilt == parser.snapshot()
        if rebuilt is not None:
            states.append(copy.deepcopy(rebuilt))
    for change in parser.finish():
        rebuilt = apply(rebuilt, change)
    assert not parser.truncated
    assert rebuilt == json.loads(text)
    return states


def violation(validate: Validator, value: Any) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as info:
        validate(value)
    return info.value


# -- complete values -----------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_valid_values_pass_and_come_back_identical(schema: dict[str, Any], value: Any) -> None:
    validate, validate_partial = compile_json_schema(schema)
    before = copy.deepcopy(value)
    assert validate(value) is value
    assert validate_partial(value) is value
    assert value == before


@pytest.mark.parametrize(
    ("schema", "value", "path", "keyword", "fragments"),
    [
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "items": [ORDER["items"][0], {**ORDER["items"][1], "price": "abc"}]},
            "$.items[1].price",
            "type",
            ["expected type='number'", "got 'abc'", "schema location #/$defs/item/properties/price/type)"],
            id="nested-type",
        ),
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "customer": {"name": "Ada"}},
            "$.customer",
            "required",
            ["expected required=['name', 'email']", "got {'name': 'Ada'}", "'email' is a required property"],
            id="ref-required",
        ),
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "coupon": "X"},
            "$",
            "additionalProperties",
            ["expected additionalProperties=False", "'coupon' was unexpected"],
            id="additional-properties",
        ),
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "status": "shipped"},
            "$.status",
            "enum",
            ["expected enum=['pending', 'paid']", "got 'shipped'"],
            id="enum",
        ),
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "required": "yes"},
            "$.required",
            "type",
            ["expected type='boolean'", "got 'yes'", "#/properties/required/type"],
            id="property-named-required",
        ),
        pytest.param(
            ORDER_SCHEMA,
            {**ORDER, "legacy": 1},
            "$.legacy",
            None,
            [
                "expected no value here",
                "got 1",
                "the schema is false",
                "schema location #/properties/legacy)",
            ],
            id="false-subschema",
        ),
        pytest.param(
            TREE_SCHEMA,
            BAD_TREE,
            "$.children[0].children[1].value",
            "type",
            ["expected type='integer'", "got '4'"],
            id="recursive-ref",
        ),
        pytest.param(
            DRAFT7_SCHEMA,
            {"origin": [1, 2], "tags": ["main"], "card": "4242"},
            "$",
            "dependencies",
            ["'billing' is a dependency of 'card'"],
            id="draft7-dependencies-array",
        ),
        pytest.param(
            DRAFT7_SCHEMA,
            {"origin": [1, 2], "tags": ["main"], "billing": "Paris"},
            "$",
            "required",
            ["'card' is a required property", "#/dependencies/billing/required"],
            id="draft7-dependencies-schema",
        ),
        pytest.param(
            DRAFT7_SCHEMA,
            {"origin": [1, 2, 3], "tags": ["main"]},
            "$.origin",
            "additionalItems",
            ["expected additionalItems=False", "got [1, 2, 3]"],
            id="draft7-definitions-items-list",
        ),
        pytest.param(
            DRAFT7_SCHEMA,
            {"origin": [1, 2], "tags": ["x"]},
            "$.tags",
            "contains",
            ["expected contains={'const': 'main'}", "got ['x']"],
            id="draft7-contains",
        ),
    ],
)
def test_invalid_values_name_the_path_the_expectation_and_the_value(
    schema: dict[str, Any], value: Any, path: str, keyword: str | None, fragments: list[str]
) -> None:
    validate, _ = compile_json_schema(schema)
    error = violation(validate, value)
    message = str(error)
    assert message.startswith(f"JSON value does not match the JSON Schema at {path}: expected ")
    assert error.path == path
    assert error.keyword == keyword
    for fragment in fragments:
        assert fragment in message
    assert isinstance(error, ValueError)
    assert isinstance(error.__cause__, jsonschema.ValidationError)
    assert error.others == 0
    assert "other error" not in message


def test_several_errors_show_the_best_match_and_count_the_others() -> None:
    validate, _ = compile_json_schema(ORDER_SCHEMA)
    value = {**ORDER, "id": "1234", "status": "lost", "coupon": 1}
    error = violation(validate, value)
    assert error.others == 2
    assert str(error).endswith("; and 2 other errors")
    # best_match ranks the shallowest error first.
    assert (error.path, error.keyword) == ("$", "additionalProperties")
    cause = cast(jsonschema.ValidationError, error.__cause__)
    assert (cause.json_path, cause.validator) == ("$", "additionalProperties")

    one_more = violation(validate, {**ORDER, "id": "1234", "status": "lost"})
    assert one_more.others == 1
    assert str(one_more).endswith("; and 1 other error")


def test_best_match_descends_into_any_of() -> None:
    validate, _ = compile_json_schema(
        {"anyOf": [{"type": "object", "properties": {"n": {"type": "integer"}}}, {"type": "string"}]}
    )
    error = violation(validate, {"n": "x"})
    assert error.path == "$.n"
    assert error.keyword == "type"


def test_received_value_is_cut_to_about_80_characters() -> None:
    validate, _ = compile_json_schema({"type": "object", "properties": {"text": {"type": "integer"}}})
    error = violation(validate, {"text": "x" * 10_000})
    message = str(error)
    received = message.split(", got ", 1)[1].split(" (", 1)[0]
    assert received.startswith("'xxx")
    assert "..." in received
    assert len(received) <= 80
    assert len(message) < 400

    big = {f"k{i}": list(range(100)) for i in range(100)}
    error = violation(validate, {"text": big})
    received = str(error).split(", got ", 1)[1].split(" (", 1)[0]
    assert len(received) <= 80


def test_formats_are_annotations() -> None:
    validate, _ = compile_json_schema(ORDER_SCHEMA)
    value = {**ORDER, "customer": {"name": "Ada", "email": "not an email"}}
    assert validate(value) is value


# -- prefix states -------------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_structural_prefixes_pass_partial_and_fail_full_when_keys_are_missing(
    schema: dict[str, Any], value: Any
) -> None:
    validate, validate_partial = compile_json_schema(schema)
    prefixes = structural_prefixes(value)
    assert prefixes[-1] == value
    missing = 0
    for prefix in prefixes:
        assert validate_partial(prefix) is prefix
        if drops_a_key(prefix, value):
            missing += 1
            with pytest.raises(SchemaViolation):
                validate(prefix)
    assert missing > 5


def test_required_keys_missing_fail_full_with_the_required_keyword() -> None:
    validate, validate_partial = compile_json_schema(ORDER_SCHEMA)
    prefix = {"note": {}, "id": 1234, "customer": {"name": "Ada"}}
    assert validate_partial(prefix) is prefix
    error = violation(validate, prefix)
    assert error.keyword == "required"
    assert error.others == 3  # items, status, required at the top; email in customer


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        pytest.param(ORDER_SCHEMA, ORDER, id="order"),
        pytest.param(TREE_SCHEMA, TREE, id="tree"),
        pytest.param(DRAFT7_SCHEMA, DRAFT7, id="draft7"),
        pytest.param(SOUND_SCHEMA, SOUND, id="sound"),
    ],
)
def test_parser_prefix_states_char_by_char(schema: dict[str, Any], value: Any) -> None:
    validate, validate_partial = compile_json_schema(schema)
    text = json.dumps(value, indent=1)
    states = parser_states(text, list(range(1, len(text))))
    assert len(states) > 40
    rejected: list[Any] = []
    for state in states:
        status = cast(dict[str, Any], state).get("status") if isinstance(state, dict) else None
        if isinstance(status, str) and status not in ("pending", "paid"):
            # The trade-off: the string still streaming is checked as it stands.
            error = violation(validate_partial, state)
            assert (error.path, error.keyword) == ("$.status", "enum")
            assert str(error).startswith("partial JSON value does not match the JSON Schema at $.status")
            rejected.append(status)
        else:
            assert validate_partial(state) is state
    assert rejected == (["", "p", "pe", "pen", "pend", "pendi", "pendin"] if schema is ORDER_SCHEMA else [])
    assert states[-1] == value
    assert validate(states[-1]) is states[-1]


SOUND_TEXT = json.dumps(SOUND)
SOUND_PARTIAL = compile_json_schema(SOUND_SCHEMA)[1]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_prefix_cuts_never_fail_validate_partial(data: st.DataObject) -> None:
    text = SOUND_TEXT
    cut = data.draw(st.integers(1, len(text)), label="cut")
    splits = data.draw(st.lists(st.integers(1, cut), max_size=6), label="splits")
    parser = PartialJsonParser()
    rebuilt: Any = None
    bounds = [0, *sorted(set(splits)), cut]
    for start, end in itertools.pairwise(bounds):
        for change in parser.feed(text[start:end]):
            rebuilt = apply(rebuilt, change)
    assert rebuilt == parser.snapshot()
    if rebuilt is not None:
        assert SOUND_PARTIAL(rebuilt) is rebuilt


@pytest.mark.parametrize(
    ("schema", "value", "path", "keyword"),
    [
        pytest.param(ORDER_SCHEMA, {"id": "12"}, "$.id", "type", id="string-for-integer"),
        pytest.param(
            ORDER_SCHEMA, {"items": [{"sku": "A", "qty": "2"}]}, "$.items[0].qty", "type", id="nested-type"
        ),
        pytest.param(ORDER_SCHEMA, {"id": 1, "coupon": "X"}, "$", "additionalProperties", id="extra-key"),
        pytest.param(
            ORDER_SCHEMA,
            {"items": [{"sku": "A", "colour": "red"}]},
            "$.items[0]",
            "additionalProperties",
            id="extra-key-ref",
        ),
        pytest.param(ORDER_SCHEMA, {"legacy": None}, "$.legacy", None, id="false-subschema"),
        pytest.param(ORDER_SCHEMA, {"required": "yes"}, "$.required", "type", id="property-named-required"),
        pytest.param(
            TREE_SCHEMA,
            {"value": 1, "children": [{"value": "x"}]},
            "$.children[0].value",
            "type",
            id="recursive",
        ),
        pytest.param(
            TREE_SCHEMA,
            {"children": [{"leaf": True}]},
            "$.children[0]",
            "additionalProperties",
            id="recursive-extra",
        ),
        pytest.param(DRAFT7_SCHEMA, {"origin": [1, "2"]}, "$.origin[1]", "type", id="draft7-items-list"),
        pytest.param(
            DRAFT7_SCHEMA, {"origin": [1, 2, 3]}, "$.origin", "additionalItems", id="draft7-additional-items"
        ),
        pytest.param(
            {"properties": {"shape": SOUND_SCHEMA["properties"]["shape"]}},
            {"shape": {"r": 1, "w": 2}},
            "$.shape",
            "anyOf",
            id="no-one-of-branch-fits",
        ),
        pytest.param(SOUND_SCHEMA, {"tags": ["a", 1]}, "$.tags[1]", "type", id="items-type"),
    ],
)
def test_validate_partial_still_rejects_wrong_types_and_forbidden_keys(
    schema: dict[str, Any], value: Any, path: str, keyword: str | None
) -> None:
    _, validate_partial = compile_json_schema(schema)
    error = violation(validate_partial, value)
    assert (error.path, error.keyword) == (path, keyword)
    assert str(error).startswith(f"partial JSON value does not match the JSON Schema at {path}: expected ")


# -- the relaxation, keyword by keyword ----------------------------------------------------------


def test_one_of_accepts_a_prefix_several_branches_match() -> None:
    validate, validate_partial = compile_json_schema(SOUND_SCHEMA)
    prefix: dict[str, Any] = {"shape": {}}
    assert validate_partial(prefix) is prefix
    full_shape = violation(validate, {**SOUND, "shape": {}})
    assert full_shape.keyword == "oneOf"


def test_if_then_else_waits_for_the_key_that_decides() -> None:
    validate, validate_partial = compile_json_schema(SOUND_SCHEMA)
    # `kind` has not arrived: a relaxed `if` alone would match and apply `then`, forbidding w.
    prefix = {"shape": {"w": 2}}
    assert validate_partial(prefix) is prefix
    # Both branches reject r and w together, whatever kind turns out to be.
    assert violation(validate_partial, {"shape": {"w": 2, "r": 1}}).path in ("$.shape.w", "$.shape.r")
    # Nor can "circle" decide: a prefix state cannot tell it from "circles" still streaming.
    assert validate_partial({"shape": {"w": 2}, "kind": "circle"}) == {"shape": {"w": 2}, "kind": "circle"}
    # And the complete value is checked by the real if/then/else.
    error = violation(validate, {**SOUND, "kind": "circle"})
    assert (error.path, error.keyword, error.schema_path) == (
        "$.shape.w",
        None,
        "#/then/properties/shape/properties/w",
    )


def test_not_is_dropped_for_prefixes_and_kept_for_values() -> None:
    validate, validate_partial = compile_json_schema(SOUND_SCHEMA)
    both = {"card": "4242", "cash": 5, "holder": "Ada"}
    # A relaxed `not: {required: [...]}` would be `not: {}`: it would reject every prefix.
    assert validate_partial({"pay": {}}) == {"pay": {}}
    assert validate_partial({"pay": both}) == {"pay": both}
    error = violation(validate, {**SOUND, "pay": both})
    assert (error.path, error.keyword) == ("$.pay", "not")


def test_unique_items_and_contains_are_prefix_safe() -> None:
    validate, validate_partial = compile_json_schema(SOUND_SCHEMA)
    # ["ab", "abc"] streams through ["ab", "ab"]; one tag has not reached minContains=2.
    for tags in (["ab", "ab"], ["ab"], []):
        assert validate_partial({"tags": tags}) == {"tags": tags}
    assert violation(validate, {**SOUND, "tags": ["ab", "ab"]}).keyword == "uniqueItems"
    assert violation(validate, {**SOUND, "tags": ["ab"]}).keyword in ("minItems", "minContains")

    draft7_validate, draft7_partial = compile_json_schema(DRAFT7_SCHEMA)
    assert draft7_partial({"tags": []}) == {"tags": []}
    assert violation(draft7_validate, {**DRAFT7, "tags": []}).keyword == "contains"


def test_contains_still_marks_items_evaluated() -> None:
    schema = {"type": "array", "contains": {"type": "string"}, "minContains": 2, "unevaluatedItems": False}
    validate, validate_partial = compile_json_schema(schema)
    assert validate(["a", "b"]) == ["a", "b"]
    assert validate_partial(["a"]) == ["a"]
    assert violation(validate_partial, ["a", 1]).keyword == "unevaluatedItems"
    assert violation(validate, ["a"]).keyword == "minContains"


def test_dependent_required_and_min_properties_wait() -> None:
    validate, validate_partial = compile_json_schema(SOUND_SCHEMA)
    assert validate_partial({"pay": {"card": "4242"}}) == {"pay": {"card": "4242"}}
    error = violation(validate, {**SOUND, "pay": {"card": "4242", "cash": 1}})
    assert error.keyword in ("dependentRequired", "not")
    assert violation(validate, {**SOUND, "pay": {"cash": 1}}).keyword == "minProperties"

    draft7_validate, draft7_partial = compile_json_schema(DRAFT7_SCHEMA)
    for prefix in ({"card": "4242"}, {"billing": "Paris"}):
        assert draft7_partial(prefix) is prefix
        with pytest.raises(SchemaViolation):
            draft7_validate({**prefix, "origin": [1, 2], "tags": ["main"]})


def test_the_relaxed_schema_touches_keywords_only() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "required": {"type": "array", "minItems": 1, "default": ["x"]},
            "rule": {
                "const": {"required": ["a"], "minItems": 3},
                "examples": [{"required": ["b"]}],
            },
            "level": {"enum": [{"minProperties": 1}, "required"]},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        "required": ["required", "rule"],
        "minProperties": 2,
        "default": {"required": ["keep"], "minItems": 9},
        "$defs": {"x": {"required": ["y"], "properties": {"y": False}}},
        "oneOf": [{"required": ["rule"]}, True],
        "allOf": [{"minProperties": 1}],
        "not": {"required": ["z"]},
        "x-vendor": {"required": ["untouched"]},
    }
    original = copy.deepcopy(schema)
    relaxed = _SchemaRewriter(Draft202012Validator.VALIDATORS, relax=True).rewrite(schema)
    assert schema == original
    assert relaxed == {
        "type": "object",
        "properties": {
            "required": {"type": "array", "default": ["x"]},
            "rule": {
                "const": {"required": ["a"], "minItems": 3},
                "examples": [{"required": ["b"]}],
            },
            "level": {"enum": [{"minProperties": 1}, "required"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "default": {"required": ["keep"], "minItems": 9},
        "$defs": {"x": {"properties": {"y": {"not": {}}}}},
        "allOf": [{}, {"anyOf": [{}, True]}],
        "x-vendor": {"required": ["untouched"]},
    }
    Draft202012Validator.check_schema(relaxed)

    _, validate_partial = compile_json_schema(schema)
    ok = {"rule": {"required": ["a"], "minItems": 3}}
    assert validate_partial(ok) is ok
    # const is not relaxed: {} is not the constant.
    assert violation(validate_partial, {"rule": {}}).keyword == "const"


def test_if_then_else_rewrite_shape() -> None:
    schema = {"if": {"required": ["a"]}, "then": {"required": ["b"]}, "allOf": [{"type": "object"}]}
    relaxed = _SchemaRewriter(Draft202012Validator.VALIDATORS, relax=True).rewrite(schema)
    assert relaxed == {"allOf": [{"type": "object"}, {"anyOf": [{"allOf": [{}, {}]}, True]}]}

    # Draft 6 has no if: the keywords are inert there, walked like any subschema, not rewritten.
    draft6 = jsonschema.validators.Draft6Validator.VALIDATORS
    assert _SchemaRewriter(draft6, relax=True).rewrite(schema) == {
        "if": {},
        "then": {},
        "allOf": [{"type": "object"}],
    }


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_derived_schemas_are_valid_json_schemas(schema: dict[str, Any], value: Any) -> None:
    cls = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
    for relax in (False, True):
        derived = _SchemaRewriter(cls.VALIDATORS, relax=relax).rewrite(schema)
        cls.check_schema(derived)
        assert cls(derived).is_valid(value)


def test_boolean_subschemas() -> None:
    schema = {
        "type": "array",
        "prefixItems": [True, {"type": "integer"}, False],
        "items": False,
    }
    validate, validate_partial = compile_json_schema(schema)
    assert validate(["anything", 1]) == ["anything", 1]
    third = violation(validate, ["x", 1, "no"])
    assert (third.path, third.keyword, third.schema_path) == ("$[2]", None, "#/prefixItems/2")
    # 2020-12 `items: false` reports itself, naming the extra items.
    error = violation(validate, ["x", 1, True, 4])
    assert (error.path, error.keyword) == ("$", "items")
    assert "Expected at most 3 items but found 1 extra: 4" in str(error)
    assert validate_partial(["x"]) == ["x"]
    assert violation(validate_partial, ["x", "1"]).path == "$[1]"

    # draft 7: `items: false` applies to each item.
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", "properties": {"a": {"items": False}}}
    draft7_validate, _ = compile_json_schema(draft7)
    error = violation(draft7_validate, {"a": [1]})
    assert (error.path, error.keyword, error.schema_path) == ("$.a[0]", None, "#/properties/a/items")


# -- the schema itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(("schema", "value"), CASES)
def test_the_callers_schema_is_not_modified_nor_shared(schema: dict[str, Any], value: Any) -> None:
    mine = copy.deepcopy(schema)
    before = copy.deepcopy(mine)
    validate, validate_partial = compile_json_schema(mine)
    for prefix in structural_prefixes(value):
        validate_partial(prefix)
    validate(value)
    assert mine == before

    # Later changes to the caller's dict do not reach the validators.
    mine["type"] = "string"
    mine.setdefault("properties", {})["extra"] = False
    assert validate(value) is value
    assert validate_partial(value) is value


def test_invalid_schema_fails_at_compile_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="expected a valid JSON Schema") as info:
        compile_json_schema({"type": "object", "properties": {"id": {"type": "strin"}}})
    message = str(info.value)
    assert message.startswith("parse_json(schema=...) expected a valid JSON Schema, got: 'strin' ")
    assert "at $.properties.id.type" in message
    assert "Draft202012Validator meta-schema" in message
    assert not isinstance(info.value, SchemaViolation)
    assert isinstance(info.value.__cause__, jsonschema.SchemaError)

    with pytest.raises(ValueError, match=r"'\(' is not a 'regex' at \$\.properties\.code\.pattern"):
        compile_json_schema({"properties": {"code": {"pattern": "("}}})

    draft7_bad = {"$schema": "http://json-schema.org/draft-07/schema#", "required": "id"}
    with pytest.raises(ValueError, match=r"'id' is not of type 'array' at \$\.required .*Draft7Validator"):
        compile_json_schema(draft7_bad)

    with pytest.raises(ValueError, match="expected a JSON Schema dict, got 'object'"):
        compile_json_schema(cast(Any, "object"))


def test_dialect_comes_from_dollar_schema() -> None:
    # Draft 7 reads `items` as a list of schemas and ignores `prefixItems`; 2020-12 rejects a list.
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}]}
    validate, _ = compile_json_schema(schema)
    assert violation(validate, ["x"]).path == "$[0]"
    with pytest.raises(ValueError, match="expected a valid JSON Schema"):
        compile_json_schema({"items": [{"type": "integer"}]})
    assert Draft7Validator.VALIDATORS is not Draft202012Validator.VALIDATORS


RECURSIVE_WRONG: dict[str, Any] = {"b": [{"a": 1, "b": []}, {"b": [{"a": "2"}]}]}


@pytest.mark.parametrize(
    ("uri", "schema", "deep_wrong_type"),
    [
        pytest.param(
            "http://json-schema.org/draft-03/schema#",
            {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "required": True},
                    "b": {"type": "array", "minItems": 2, "items": {"type": "integer"}},
                },
                "dependencies": {"b": "a"},
            },
            {"b": [1, "2"]},
            id="draft3",
        ),
        pytest.param(
            "http://json-schema.org/draft-04/schema#",
            {
                "type": "object",
                "properties": {
                    "a": {"type": "integer"},
                    "b": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["a", "b"],
                "oneOf": [{"required": ["a"]}, {"required": ["z"]}],
            },
            {"b": [1, "2"]},
            id="draft4",
        ),
        pytest.param(
            "https://json-schema.org/draft/2019-09/schema",
            {
                "$recursiveAnchor": True,
                "type": "object",
                "properties": {
                    "a": {"type": "integer"},
                    "b": {"type": "array", "items": {"$recursiveRef": "#"}},
                },
                "required": ["a", "b"],
                "unevaluatedProperties": False,
            },
            RECURSIVE_WRONG,
            id="draft2019-09",
        ),
    ],
)
def test_other_dialects(uri: str, schema: dict[str, Any], deep_wrong_type: Any) -> None:
    validate, validate_partial = compile_json_schema({"$schema": uri, **schema})
    assert validate_partial({}) == {}
    assert violation(validate, {}).keyword in ("required", "minItems")
    error = violation(validate_partial, deep_wrong_type)
    assert error.keyword == "type"
    assert error.path in ("$.b[1]", "$.b[1].b[0].a")


def test_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = copy.deepcopy(ORDER_SCHEMA)
    real_validator_for = jsonschema.validators.validator_for
    real_check = Draft202012Validator.check_schema
    roots: list[Any] = []
    checks: list[Any] = []

    def counting_validator_for(schema_arg: Any, *args: Any, **kwargs: Any) -> Any:
        if schema_arg == schema:  # jsonschema also calls it for every subschema it descends into
            roots.append(schema_arg)
        return real_validator_for(schema_arg, *args, **kwargs)

    def counting_check(schema_arg: Any, *args: Any, **kwargs: Any) -> None:
        checks.append(schema_arg)
        real_check(schema_arg, *args, **kwargs)

    monkeypatch.setattr(jsonschema.validators, "validator_for", counting_validator_for)
    monkeypatch.setattr(Draft202012Validator, "check_schema", counting_check)
    validate, validate_partial = compile_json_schema(schema)
    assert (len(roots), len(checks)) == (1, 1)
    for _ in range(50):
        validate(ORDER)
        for prefix in structural_prefixes(ORDER)[:20]:
            validate_partial(prefix)
        with pytest.raises(SchemaViolation):
            validate({})
    assert (len(roots), len(checks)) == (1, 1)
