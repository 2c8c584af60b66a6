"""rxstream's operators, to use beside reactivex's own: ``from rxstream import operators as rxs``."""

from rxstream.operators._json import JsonAssembler, parse_json
from rxstream.operators._json_dedupe import dedupe_json
from rxstream.operators._normalize import normalize

__all__ = ["JsonAssembler", "dedupe_json", "normalize", "parse_json"]
