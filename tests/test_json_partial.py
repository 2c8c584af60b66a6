"""Tests for the incremental JSON core behind ``parse_json()``: PartialJsonParser and apply."""

from __future__ import annotations

import itertools
import json
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxstream._errors import JsonError
from rxstream.operators._json_partial import Change, JsonPath, PartialJsonParser, apply

SMALL_DOCS = [
    '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}',
    "[1, -2.5, 3e2, 0, -0.0, 1E-3, 12.5e+2]",
    '"he said \\"hi\\" \\\\ \\/ \\b\\f\\n\\r\\t"',
    '"caf\\u00e9 \\ud83d\\ude00 \\u20AC done"',
    '{"k\\u00e9y": "v", "": [], "e": {}}',
    '"plain \u00e9\U0001f600 text"',
    "  [ [ ], { }, [ [ 1 ] ] ]  ",
    "123",
    "-0.5",
    "true",
    "null",
    '"\\ud83d"',
    '["\\ud83d\\u0041", "\\udc00"]',
    '["\\ud83dx", "\\\\ud83d\\\\", "\\\\\\ud83d\\ude00"]',
    '{"\\"q\\\\": {"\\ud83d\\ude00": "\\n"}}',
    '{"a": 1} [2] "x" 3 true {}',
]


def all_paths(value: Any, path: JsonPath = ()) -> list[JsonPath]:
    paths = [path]
    if isinstance(value, dict):
        for key, item in cast(dict[str, Any], value).items():
            paths += all_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(cast(list[Any], value)):
            paths += all_paths(item, (*path, index))
    return paths


def at(value: Any, path: JsonPath) -> Any:
    for key in path:
        value = value[key]
    return value


def is_prefix_state(partial: Any, final: Any) -> bool:
    """Whether ``partial`` is a state the value passes through on its way to ``final``."""
    if isinstance(final, bool) or final is None:
        return partial is final
    if isinstance(final, int | float):
        # A number still streaming shows the value of its longest complete prefix.
        return isinstance(partial, int | float) and not isinstance(partial, bool)
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    if isinstance(final, list):
        if not isinstance(partial, list):
            return False
        items, final_items = cast(list[Any], partial), cast(list[Any], final)
        return len(items) <= len(final_items) and all(
            is_prefix_state(p, f) for p, f in zip(items, final_items, strict=False)
        )
    assert isinstance(final, dict)
    if not isinstance(partial, dict):
        return False
    fields, final_fields = cast(dict[str, Any], partial), cast(dict[str, Any], final)
    keys = list(fields)
    return keys == list(final_fields)[: len(keys)] and all(
        is_prefix_state(fields[k], final_fields[k]) for k in keys
    )


def parse_all(document: str) -> list[Any]:
    decoder = json.JSONDecoder()
    values: list[Any] = []
    index = 0
    while True:
        while index < len(document) and document[index] in " \t\n\r":
            index += 1
        if index == len(document):
            return values
        value, index = decoder.raw_decode(document, index)
        values.append(value)


def check(fragments: list[str]) -> PartialJsonParser:
    """Feed ``fragments`` and check every invariant of the changes against json's own parse."""
    finals = parse_all("".join(fragments))
    parser = PartialJsonParser()
    rebuilt: list[Any] = []
    completed: list[tuple[int, JsonPath]] = []
    batches = [parser.feed(fragment) for fragment in fragments]
    batches.append(parser.finish())
    for batch in batches:
        for change in batch:
            index = change.top_level_index
            assert index <= len(rebuilt)
            if index == len(rebuilt):
                assert change.path == ()
                rebuilt.append(None)
            rebuilt[index] = apply(rebuilt[index], change)
            for path in change.completed:
                completed.append((index, path))
                assert at(rebuilt[index], path) == at(finals[index], path)
        for partial, final in zip(rebuilt, finals, strict=False):
            assert is_prefix_state(partial, final), (partial, final)
    assert rebuilt == finals
    assert not parser.truncated
    assert len(completed) == len(set(completed))
    expected = {(i, path) for i, final in enumerate(finals) for path in all_paths(final)}
    assert set(completed) == expected
    if finals:
        assert parser.value == finals[-1]
        assert parser.value_count == len(finals)
    return parser


@pytest.mark.parametrize("document", SMALL_DOCS)
def test_every_split_point_rebuilds_the_document(document: str) -> None:
    for cut in range(len(document) + 1):
        check([document[:cut], document[cut:]])


@pytest.mark.parametrize("document", SMALL_DOCS)
def test_one_character_fragments(document: str) -> None:
    check(list(document))


@pytest.mark.parametrize("document", SMALL_DOCS)
def test_every_pair_of_split_points(document: str) -> None:
    for a in range(len(document) + 1):
        for b in range(a, len(document) + 1, 3):
            check([document[:a], document[a:b], document[b:]])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@st.composite
def split_documents(draw: st.DrawFn) -> list[str]:
    values = draw(st.lists(json_values, min_size=1, max_size=3))
    texts = [
        json.dumps(
            value,
            indent=draw(st.sampled_from([None, 0, 2, "\t"])),
            ensure_ascii=draw(st.booleans()),
            separators=draw(st.sampled_from([None, (",", ":"), (" ,  ", " :\n")])),
        )
        for value in values
    ]
    document = draw(st.sampled_from([" ", "\n", " \r\n\t "])).join(texts) + draw(
        st.sampled_from(["", " ", "\n"])
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(document)), max_size=12)))
    bounds = [0, *cuts, len(document)]
    return [document[a:b] for a, b in itertools.pairwise(bounds)]


@given(split_documents())
@settings(max_examples=300, deadline=None)
def test_random_documents_split_randomly(fragments: list[str]) -> None:
    check(fragments)


def ops(changes: list[Change]) -> list[tuple[JsonPath, str, Any, tuple[JsonPath, ...]]]:
    return [(c.path, c.op, c.value, c.completed) for c in changes]


def test_string_streams_as_set_then_appends() -> None:
    parser = PartialJsonParser()
    assert ops(parser.feed('{"a": "he')) == [((), "set", {}, ()), (("a",), "set", "he", ())]
    assert ops(parser.feed("ll")) == [(("a",), "append", "ll", ())]
    assert parser.value == {"a": "hell"}
    assert ops(parser.feed('o", "b": [')) == [
        (("a",), "append", "o", (("a",),)),
        (("b",), "set", [], ()),
    ]
    assert ops(parser.feed("]}")) == [(("b",), "done", None, (("b",), ()))]
    assert ops(parser.finish()) == []
    assert parser.value == {"a": "hello", "b": []}


def test_number_split_across_fragments_reports_value_so_far() -> None:
    parser = PartialJsonParser()
    assert ops(parser.feed("[12")) == [((), "set", [], ()), ((0,), "set", 12, ())]
    assert ops(parser.feed("3.5e")) == [((0,), "set", 123.5, ())]
    assert ops(parser.feed("2")) == [((0,), "set", 12350.0, ())]
    assert ops(parser.feed("]")) == [((0,), "done", None, ((0,), ()))]
    assert parser.value == [12350.0]


def test_top_level_number_is_completed_by_finish() -> None:
    parser = PartialJsonParser()
    assert ops(parser.feed("-4")) == [((), "set", -4, ())]
    assert ops(parser.feed("2")) == [((), "set", -42, ())]
    assert ops(parser.finish()) == [((), "done", None, ((),))]
    assert not parser.truncated
    assert parser.value == -42


def test_int_and_float_with_equal_value_are_different_changes() -> None:
    parser = PartialJsonParser()
    parser.feed("1")
    assert ops(parser.feed(".0 ")) == [((), "set", 1.0, ((),))]
    assert isinstance(parser.value, float)


def test_surrogate_pair_split_inside_the_escape() -> None:
    parser = PartialJsonParser()
    out = parser.feed('"a\\ud83d\\u') + parser.feed("de") + parser.feed('00b"')
    assert "".join(c.value for c in out) == "a\U0001f600b"
    assert out[-1].completed == ((),)


def test_multiple_top_level_values_are_indexed() -> None:
    parser = PartialJsonParser()
    changes = parser.feed('{"a": 1} [2] "x" 3 true') + parser.finish()
    assert sorted({c.top_level_index for c in changes}) == [0, 1, 2, 3, 4]
    assert parser.value_count == 5
    assert parser.value is True


def test_truncated_text_keeps_the_partial_value() -> None:
    parser = PartialJsonParser()
    parser.feed('{"a": [1, {"b": "hel')
    assert parser.finish() == []
    assert parser.truncated
    assert parser.value == {"a": [1, {"b": "hel"}]}
    assert parser.finish() == []


@pytest.mark.parametrize("text", ['{"a"', '{"a":', "[1,", "tr", "12.", "-", '"\\u12', '{"a": 1'])
def test_every_way_of_ending_inside_a_value_is_truncated(text: str) -> None:
    parser = PartialJsonParser()
    parser.feed(text)
    parser.finish()
    assert parser.truncated


def test_empty_text_is_not_truncated() -> None:
    parser = PartialJsonParser()
    assert parser.feed("") == []
    assert parser.feed("  \n") == []
    assert parser.finish() == []
    assert not parser.truncated
    assert parser.value is None
    assert parser.value_count == 0


def test_snapshot_is_an_independent_copy() -> None:
    parser = PartialJsonParser()
    parser.feed('{"a": ["x", "yy')
    snap = parser.snapshot()
    assert snap == {"a": ["x", "yy"]}
    parser.feed('z"]}')
    assert snap == {"a": ["x", "yy"]}
    assert parser.value == {"a": ["x", "yyz"]}


def test_apply_does_not_share_placeholders_between_consumers() -> None:
    parser = PartialJsonParser()
    changes = parser.feed('{"a": [1]}')
    first: Any = None
    second: Any = None
    for change in changes:
        first = apply(first, change)
        second = apply(second, change)
    first["a"].append(2)
    assert second == {"a": [1]}
    assert changes[0].value == {}


@pytest.mark.parametrize(
    ("fragments", "position", "expected"),
    [
        (['{"a" 1}'], 5, "expected ':'"),
        (["[1,", "]"], 3, "expected a value"),
        (['{"a": 1', " 2}"], 8, "expected ',' or '}'"),
        (["[1 2]"], 3, "expected ',' or ']'"),
        (["{1: 2}"], 1, "expected a string key or '}'"),
        (['{"a": 1,}'], 8, "expected a string key"),
        (["01"], 0, "expected a number"),
        (["1.", "x"], 0, "expected a number"),
        (["tru", "e1", "x"], 5, "expected a value"),
        (["nul", "x"], 0, "expected 'null'"),
        (['"a\\x"'], 3, "expected an escape character"),
        (['"a\\u00g1"'], 4, "expected 4 hex digits"),
        (['"a\nb"'], 2, "control characters must be escaped"),
        (["]"], 0, "expected a value"),
    ],
)
def test_invalid_json_raises_json_error(fragments: list[str], position: int, expected: str) -> None:
    parser = PartialJsonParser()
    with pytest.raises(JsonError) as info:
        for fragment in fragments:
            parser.feed(fragment)
        parser.finish()
    assert f"position {position}:" in str(info.value)
    assert expected in str(info.value)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)
    with pytest.raises(JsonError):
        parser.feed("1")


def test_number_no_continuation_can_fix_fails_before_it_ends() -> None:
    parser = PartialJsonParser()
    parser.feed("[1e+")
    with pytest.raises(JsonError, match=r"position 1: expected a number, got '1e\+-'"):
        parser.feed("-")


def test_too_many_digits_raise_json_error_with_cause() -> None:
    parser = PartialJsonParser()
    with pytest.raises(JsonError, match="expected a number") as info:
        parser.feed("9" * 5000 + " ")
    assert isinstance(info.value.__cause__, ValueError)


def test_feed_after_finish_raises() -> None:
    parser = PartialJsonParser()
    parser.feed("1")
    parser.finish()
    with pytest.raises(JsonError, match="after finish"):
        parser.feed("2")


def test_work_is_linear_in_the_number_of_fragments() -> None:
    # Counts characters scanned rather than timing: a parser that re-scans its buffer per
    # fragment would carry the whole string in its tail.
    parser = PartialJsonParser()
    parser.feed('{"content": "')
    for _ in range(5000):
        parser.feed("abcd\\")
        assert len(parser._tail) <= 1  # pyright: ignore[reportPrivateUsage]
        parser.feed("n")
    parser.feed('"}')
    assert parser.value == {"content": "abcd\n" * 5000}
