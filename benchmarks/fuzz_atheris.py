"""Coverage-guided fuzzing (atheris / libFuzzer) of the body decoders and normalize().

Each input is one framing byte (SSE, JSON Lines or Gemini JSON array), one split byte and a
body. The body is decoded whole and in pieces (the payloads and the error class must agree),
with small limits so the limit paths are reached, then the payloads go through the pure
normalize() core. The only outcomes allowed are payloads, events and one RxStreamError: any
other exception, or a wire's crash caught by the normalizer's catch-all, is a finding.

    pip install atheris
    python benchmarks/fuzz_atheris.py -atheris_runs=100000 [corpus_dir ...] [libFuzzer flags]

Without a corpus directory, the recordings in tests/recordings seed one in the temporary
directory (``rxstream-atheris-corpus``), where a crashing input is written too.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris  # pyright: ignore[reportMissingImports]

with atheris.instrument_imports():  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    from rxstream._chunk import ProviderChunk
    from rxstream._errors import RxStreamError
    from rxstream._limits import Limits
    from rxstream.operators._normalize import StreamNormalizer
    from rxstream.sources._payloads import Framing, PayloadDecoder

FRAMINGS: tuple[Framing, ...] = ("sse", "jsonl", "json")
SUFFIX = {".sse": 0, ".jsonl": 1, ".json": 2}
LIMITS = Limits(
    max_sse_line_bytes=2048,
    max_sse_event_bytes=4096,
    # Checked per read slice (approximate by design), so small values would make the split
    # comparison below flaky: larger than any input.
    max_json_element_bytes=1024 * 1024,
    max_json_depth=16,
    max_tool_arguments_bytes=512,
    max_outputs=4,
    max_tool_calls=8,
)
RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "recordings"


def decode(framing: Framing, pieces: list[bytes]) -> tuple[list[tuple[str | None, object]], RxStreamError | None]:
    decoder = PayloadDecoder(framing, limits=LIMITS)
    out: list[tuple[str | None, object]] = []
    for piece in pieces:
        out.extend(decoder.feed(piece))
    out.extend(decoder.flush())
    failure = decoder.failure
    if failure is not None and not isinstance(failure, RxStreamError):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise AssertionError(f"decoder failure is not an RxStreamError: {failure!r}")
    return out, failure


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    framing = FRAMINGS[data[0] % 3]
    step = data[1] % 64 + 1
    body = data[2:]
    whole, failure = decode(framing, [body])
    pieces, piece_failure = decode(framing, [body[i : i + step] for i in range(0, len(body), step)])
    if pieces != whole or type(piece_failure) is not type(failure):
        raise AssertionError(f"split into {step}-byte pieces changed the outcome: {failure!r} vs {piece_failure!r}")
    wire = "gemini" if framing == "json" else None
    core = StreamNormalizer(wire=wire, stream_id="a", provider_events=True, include_raw=False, limits=LIMITS)
    core.feed(ProviderChunk("open", wire, None, None, 0))
    for n, (event, payload) in enumerate(whole, 1):
        core.feed(ProviderChunk("data", wire, event, payload, n))
        if core.failure is not None:
            break
    else:
        core.flush()
    error = core.failure
    if error is not None:
        if not isinstance(error, RxStreamError):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise AssertionError(f"normalizer failure is not an RxStreamError: {error!r}")
        if "could not be normalized" in error.message and error.__cause__ is not None:
            raise AssertionError(f"a wire crashed on a payload: {error.message}") from error.__cause__


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        # Seeds: every recording, prefixed with its framing byte and a 7-byte split. libFuzzer
        # adds what it finds to this directory, so later runs start from there.
        corpus = Path(tempfile.gettempdir()) / "rxstream-atheris-corpus"
        corpus.mkdir(exist_ok=True)
        for path in sorted(RECORDINGS.iterdir()):
            if path.suffix in SUFFIX:
                (corpus / path.name).write_bytes(bytes([SUFFIX[path.suffix], 6]) + path.read_bytes()[:16384])
        argv.append(str(corpus))
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append("-max_len=16386")
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        # Crashing inputs go beside the corpus, not into the working directory.
        argv.append(f"-artifact_prefix={Path(tempfile.gettempdir()) / 'rxstream-atheris-'}")
    atheris.Setup(argv, test_one_input)  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
    atheris.Fuzz()  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]


if __name__ == "__main__":
    main()
