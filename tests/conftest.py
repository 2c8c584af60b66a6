"""Shared test fixtures: the recordings, and the --update-goldens switch."""

from __future__ import annotations

from pathlib import Path

import pytest

RECORDINGS = Path(__file__).parent / "recordings"
GOLDEN = Path(__file__).parent / "golden"


def recording_paths() -> list[Path]:
    """Every recorded provider stream in tests/recordings."""
    return sorted(p for p in RECORDINGS.iterdir() if p.suffix in {".sse", ".jsonl", ".json"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/*.json from the current code (review the diff by hand!)",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))
