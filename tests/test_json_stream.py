"""The documents behind parse_json(): the yajl fast path against the pure-Python parser, and the hand-over."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxstream._errors import JsonError, LimitExceededError
from rxstream.operators import _json_stream
from rxstream.operators._json_stream import NativeDocument, PythonDocument, Report, YajlDocument, new_document
from tests.test_json_partial import SMALL_DOCS

FastDocument = YajlDocument | NativeDocument
Document = YajlDocument | NativeDocument | PythonDocument
# Both fast paths are held to the pure-Python parser: the C one (built at install) and ijson's.
FAST: list[type[FastDocument]] = [YajlDocument, NativeDocument]


def run(doc: Document, fragments: list[str]) -> list[Any]:
    """Everything a document says for these fragments, its error included."""
    out: list[Any] = []
    try:
        out.extend(doc.feed(fragment) for fragment in fragments)
        out.append(doc.finish())
        out.append((doc.truncated, doc.value, doc.value_count))
    except (JsonError, LimitExceededError) as exc:
        out.append(("error", str(exc), type(exc).__name__))
    return out


def apply(value: Any, report: Report) -> Any:
    if report.op is None or report.path is None:
        return value
    new = json.loads(json.dumps(report.value))  # never share the report's objects
    if not report.path:
        return new if report.op == "set" else value + new
    parent = value
    for key in report.path[:-1]:
        parent = parent[key]
    key = report.path[-1]
    if report.op == "append":
        parent[key] += new
    elif isinstance(key, int) and key == len(parent):
        parent.append(new)
    else:
        parent[key] = new
    return value


def splits(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab "\\\n\t\u00e9\u20ac\U0001f600/\x01\u2028'), max_size=12),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(alphabet='kx"\\\u00e9', max_size=3), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.lists(st.integers(0, 10**6), max_size=12))
@pytest.mark.parametrize("make", FAST)
def test_fast_path_says_exactly_what_the_python_parser_says(make: type[FastDocument], value: Any, ascii_only: bool, cuts: list[int]) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    fragments = splits(text, cuts)
    fast = run(make(), fragments)
    assert fast == run(PythonDocument(), fragments)
    assert fast[-1] == (False, value, 1)


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(1, 6), st.lists(st.integers(0, 10**6), max_size=12))
@pytest.mark.parametrize("make", FAST)
def test_both_paths_enforce_the_same_depth_limit(make: type[FastDocument], value: Any, max_depth: int, cuts: list[int]) -> None:
    # The fast path hands a fragment that could cross the limit to the pure-Python parser,
    # which raises at the exact position: both say the same, at any split.
    text = json.dumps(value)
    fragments = splits(text, cuts)
    fast = run(make(max_depth=max_depth), fragments)
    assert fast == run(PythonDocument(max_depth=max_depth), fragments)
    deepest = _depth(value)
    if deepest > max_depth:
        assert fast[-1][0] == "error" and fast[-1][2] == "LimitExceededError"
        assert f"max_json_depth={max_depth}" in fast[-1][1]
    else:
        assert fast[-1] == (False, value, 1)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@pytest.mark.parametrize("make", FAST)
def test_a_million_brackets_never_reach_the_fast_path(make: type[FastDocument]) -> None:
    # Regression (issue 8): yajl turned every bracket of a fragment into an event before any
    # check ran; a fragment that could cross the limit now goes to the pure-Python parser.
    doc = make(max_depth=128)
    with pytest.raises(LimitExceededError, match="position 128"):
        doc.feed("[" * 1_000_000)
    assert doc._slow is not None  # pyright: ignore[reportPrivateUsage]


@pytest.mark.parametrize("text", SMALL_DOCS)
@pytest.mark.parametrize("make", FAST)
def test_small_documents_every_split_point(make: type[FastDocument], text: str) -> None:
    for i in range(len(text) + 1):
        fragments = [p for p in (text[:i], text[i:]) if p]
        assert run(make(), fragments) == run(PythonDocument(), fragments)
    chars = list(text)
    assert run(make(), chars) == run(PythonDocument(), chars)


@pytest.mark.parametrize("size", [1, 3, 10])
@pytest.mark.parametrize("make", FAST)
def test_rebuilt_value_follows_the_text_and_completes_every_path_once(make: type[FastDocument], size: int) -> None:
    text = json.dumps({"items": [{"id": i, "name": f"n\u00e9 {i}", "ok": i % 2 == 0, "t": [i, None]} for i in range(8)]})
    doc = make()
    value: Any = None
    completed: list[list[str | int]] = []
    finals: list[Any] = []
    for i in range(0, len(text), size):
        for report in doc.feed(text[i : i + size]) or []:
            value = apply(value, report)
            completed += report.completed
            if report.complete:
                finals.append(report.final)
        reference = PythonDocument()
        reference.feed(text[: i + size])
        assert value == reference.value
    assert doc.finish() is None and not doc.truncated
    assert finals == [json.loads(text)] and value == finals[0]
    as_tuples = [tuple(p) for p in completed]
    assert len(as_tuples) == len(set(as_tuples))
    assert () in as_tuples and ("items", 7, "t", 1) in as_tuples


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [
        # yajl overflows beyond 64-bit integers: the Python parser takes over and reads them.
        (["[1, 12345678901234567890123", "4, 2]"], [1, 123456789012345678901234, 2]),
        (["{\"n\": -99999999999999999999}"], {"n": -99999999999999999999}),
        # yajl turns lone surrogates into '?': json.loads keeps them.
        (['["\\ud83d", "x"]'], ["\ud83d", "x"]),
        (['"\\ud8', '3d\\ude00 and \\udc00"'], "\U0001f600 and \udc00"),
        (['["a", "\\', 'ud83d\\', 'ude00"]'], ["a", "\U0001f600"]),
    ],
)
@pytest.mark.parametrize("make", FAST)
def test_hand_over_keeps_the_value_exact(make: type[FastDocument], fragments: list[str], expected: Any) -> None:
    doc = make()
    value: Any = None
    for fragment in fragments:
        for report in doc.feed(fragment) or []:
            value = apply(value, report)
    doc.finish()
    assert value == expected and doc.value == expected and not doc.truncated
    assert run(make(), fragments) == run(PythonDocument(), fragments)


@pytest.mark.parametrize(
    ("fragments", "message"),
    [
        (['{"a": 1 "b": 2}'], "position 8: expected ',' or '}'"),
        (['{"a": 1', ' "b', '": 2}'], "position 8: expected ',' or '}'"),
        (["[1, 2", "3 4]"], "position 7: expected ',' or ']'"),
        (['[1, "x" "y"]'], "position 8: expected ',' or ']'"),
        (['{"a": [1,]}'], "position 9"),
        (['{"a": tru', "x}"], "position 6: expected 'true'"),
    ],
)
@pytest.mark.parametrize("make", FAST)
def test_invalid_json_raises_the_python_parsers_error(make: type[FastDocument], fragments: list[str], message: str) -> None:
    fast = run(make(), fragments)
    assert fast[-1][0] == "error" and message in fast[-1][1]
    assert fast[-1] == run(PythonDocument(), fragments)[-1]


@pytest.mark.parametrize("make", FAST)
def test_a_string_out_of_place_is_not_reported_before_the_error(make: type[FastDocument]) -> None:
    # yajl finds '"b' misplaced only once the string ends; the lexer must not report it.
    doc = make()
    assert doc.feed("[1 ") == [Report([], "set", [1], [[0]], 0, False, None)]
    with pytest.raises(JsonError, match="position 3"):
        doc.feed('"b')


@pytest.mark.parametrize(
    "text", ['{"a": "x', '{"a": 1', "[1, tr", '{"a', '"abc', '{"a": 1, "b": [', "-", "[-"]
)
@pytest.mark.parametrize("make", FAST)
def test_truncation_is_reported_like_the_python_parser(make: type[FastDocument], text: str) -> None:
    fast = run(make(), [text])
    assert fast == run(PythonDocument(), [text])
    assert fast[-1][0] is True  # truncated


@pytest.mark.parametrize("make", FAST)
def test_a_long_string_is_appended_without_rereading_it(make: type[FastDocument]) -> None:
    doc = make()
    first = doc.feed('{"code": "')
    assert first == [Report([], "set", {"code": ""}, [], 0, False, None)]
    for _ in range(1000):
        assert doc.feed("0123456789") == [Report(["code"], "append", "0123456789", [], 0, False, None)]
    (last,) = doc.feed('!"}') or []
    assert last.op == "append" and last.value == "!" and last.complete
    assert last.final == {"code": "0123456789" * 1000 + "!"}


@pytest.mark.parametrize("make", FAST)
def test_top_level_values_in_one_fragment_get_one_report_each(make: type[FastDocument]) -> None:
    reports = make().feed('{"a": 1} [2] "x" 3 ') or []
    assert [(r.top_level_index, r.complete, r.final) for r in reports] == [
        (0, True, {"a": 1}),
        (1, True, [2]),
        (2, True, "x"),
        (3, True, 3),
    ]


class CountingCoro:
    """Stands in for yajl's parser coroutine and counts the bytes it is given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0
        self.sends = 0

    def send(self, data: bytes) -> None:
        self.sent += len(data)
        self.sends += 1
        self.inner.send(data)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize("escaped", [False, True])
def test_a_long_string_reaches_yajl_once_when_it_ends(escaped: bool) -> None:
    # yajl re-reads a token it holds on every feed: fed a long string piece by piece it would
    # do quadratic work. The document gives it a string's pieces together, when it ends.
    piece = 'a\\"b\\n c\\u00e9' if escaped else "0123456789"
    text = '{"code": "' + piece * 2000 + '", "n": 1}'
    doc = YajlDocument()
    counting = CountingCoro(doc._coro)  # pyright: ignore[reportPrivateUsage]
    doc._coro = counting  # pyright: ignore[reportPrivateUsage]
    value: Any = None
    for i in range(0, len(text), 10):
        for report in doc.feed(text[i : i + 10]) or []:
            value = apply(value, report)
    assert doc.finish() is None and value == json.loads(text)
    assert counting.sent == len(text.encode())
    assert counting.sends < 10  # the opening fragment, the closing one and what follows


def test_the_c_document_is_built_and_used() -> None:
    # pip install compiles rxstream/_jsonfast.c (setup.py); parse_json() uses it when present.
    assert _json_stream._jsonfast is not None, "rxstream._jsonfast was not compiled: installing needs a C compiler"
    assert isinstance(new_document(), NativeDocument)
    assert isinstance(new_document(max_depth=3), NativeDocument)


def test_without_the_c_document_yajl_takes_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_json_stream, "_jsonfast", None)
    assert isinstance(new_document(), YajlDocument)
    with pytest.raises(ImportError, match="not built"):
        NativeDocument()


def test_the_c_document_hands_over_once_and_keeps_every_fragment() -> None:
    doc = NativeDocument()
    assert doc.feed('{"a": [1, ') is not None
    assert doc._slow is None  # pyright: ignore[reportPrivateUsage]
    # A surrogate escape is the Python parser's: it takes over with the text so far.
    reports = doc.feed('"\\ud83d\\ude00"')
    assert doc._slow is not None  # pyright: ignore[reportPrivateUsage]
    assert reports == [Report(["a", 1], "set", "\U0001f600", [["a", 1]], 0, False, None)]
    assert doc.feed("]}") == [Report(None, None, None, [["a"], []], 0, True, {"a": [1, "\U0001f600"]})]
    assert doc.finish() is None and doc.value == {"a": [1, "\U0001f600"]} and not doc.truncated


@pytest.mark.parametrize(
    ("fragments", "value"),
    [
        (["[1.5e", "3, -0, 0.25, 1E-2, 12345678901234567890123, 7]"], [1500.0, 0, 0.25, 0.01, 12345678901234567890123, 7]),
        (['{"k\\u00e9\\n', '": "\\u00', 'e9\\t\\"x\\\\"}'], {"k\u00e9\n": "\u00e9\t\"x\\"}),
        (['["\u20ac', "\U0001f600", '\u00e9"]'], ["\u20ac\U0001f600\u00e9"]),
        (["[tr", "u", "e, fa", "lse, nul", "l]"], [True, False, None]),
        (['{"a": 1, "a": 2, "b": {}}'], {"a": 2, "b": {}}),
        (["  \n\t[ ] ", '{ "x" :\r\n1 }'], {"x": 1}),
    ],
)
def test_the_c_document_reads_what_json_loads_reads(fragments: list[str], value: Any) -> None:
    doc = NativeDocument()
    finals = [r.final for fragment in fragments for r in doc.feed(fragment) or [] if r.complete]
    finals += [r.final for r in doc.finish() or [] if r.complete]
    assert doc._slow is None  # pyright: ignore[reportPrivateUsage]  (no hand-over: the C parser read it all)
    assert finals[-1] == doc.value == value and not doc.truncated
    assert run(NativeDocument(), fragments) == run(PythonDocument(), fragments)
