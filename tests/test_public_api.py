"""Public namespaces: explicit, sorted, complete __all__ lists."""

from __future__ import annotations

import importlib

import pytest


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and modules.
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


MODULES = ["rxstream", "rxstream.events", "rxstream.operators", "rxstream.sources", "rxstream.testing", "rxstream._errors"]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"
    public = {n for n in vars(module) if not n.startswith("_")}
    imported_modules = {n for n in public if type(getattr(module, n)).__name__ == "module"}
    assert public - imported_modules - {"annotations", "TYPE_CHECKING", "Any"} <= set(exported) | {"Literal"}


def test_error_tree() -> None:
    import rxstream as rx

    for cls in (rx.ProtocolError, rx.LimitExceededError, rx.ProviderError, rx.HTTPStatusError,
                rx.TransportError, rx.StreamTimeoutError, rx.JsonError):
        assert issubclass(cls, rx.RxStreamError)
    for cls in (rx.AuthenticationError, rx.BadRequestError, rx.RateLimitError, rx.ProviderUnavailableError):
        assert issubclass(cls, rx.HTTPStatusError)
    err = rx.RateLimitError("slow down", retry_after=1.5, request_id="req_1")
    assert err.status == 429 and err.retry_after == 1.5 and err.partial is None


def test_events_roundtrip_through_the_union() -> None:
    from rxstream._events import make_event
    from rxstream.events import EVENT_ADAPTER, EVENT_TYPES, TextDelta, Usage

    assert len(EVENT_TYPES) == 16
    built = make_event(TextDelta, stream_id="s", seq=3, at=9, output=1, text="hé")
    assert built == TextDelta(stream_id="s", seq=3, at=9, output=1, text="hé")
    again = EVENT_ADAPTER.validate_json(EVENT_ADAPTER.dump_json(built))
    assert again == built and isinstance(again, TextDelta)
    usage = make_event(Usage, stream_id="s", seq=1, at=1, input_tokens=3)
    assert usage.output_tokens is None and usage.source == "provider" and usage.final is False
    with pytest.raises(Exception):  # noqa: B017 - frozen: pydantic raises ValidationError
        built.text = "x"  # type: ignore[misc]
