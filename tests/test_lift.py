"""lift(): the one helper that turns a pure core into an operator; its abort() hook."""

from __future__ import annotations

import reactivex

from rxstream._errors import RxStreamError
from rxstream.operators._lift import lift


class Echo:
    failure: RxStreamError | None = None

    def __init__(self, on_abort: list[str] | Exception) -> None:
        self.on_abort = on_abort

    def feed(self, item: str) -> list[str]:
        return [item]

    def flush(self) -> list[str]:
        return ["flushed"]

    def abort(self, error: Exception) -> list[str]:
        if isinstance(self.on_abort, Exception):
            raise self.on_abort
        return [*self.on_abort, f"saw {error}"]


def run(core: Echo) -> tuple[list[str], list[Exception]]:
    items: list[str] = []
    errors: list[Exception] = []
    source = reactivex.concat(reactivex.of("a", "b"), reactivex.throw(ValueError("boom")))
    source.pipe(lift(lambda: core)).subscribe(items.append, errors.append)
    return items, errors


def test_abort_items_go_out_just_before_the_upstream_error() -> None:
    items, errors = run(Echo(["last words"]))
    assert items == ["a", "b", "last words", "saw boom"]
    assert len(errors) == 1 and str(errors[0]) == "boom"


def test_an_abort_that_raises_still_passes_the_upstream_error_with_a_note() -> None:
    items, errors = run(Echo(KeyError("bug")))
    assert items == ["a", "b"]
    (error,) = errors
    assert isinstance(error, ValueError) and str(error) == "boom"
    assert any("abort() raised KeyError" in note for note in error.__notes__)


def test_completion_flushes_and_never_calls_abort() -> None:
    items: list[str] = []
    reactivex.of("a").pipe(lift(lambda: Echo(KeyError("never")))).subscribe(items.append)
    assert items == ["a", "flushed"]
