"""JSON Schema validation for ``parse_json(schema={...})``: complete values and prefix states.

:func:`compile_json_schema` turns a JSON Schema dict into two validators, one for complete
values and one for the prefix states of a value still streaming, and :class:`SchemaViolation`
is what they raise. `jsonschema <https://python-jsonschema.readthedocs.io>`_ does the
validating; this module picks its dialect, compiles once, derives the relaxed schema for
prefix states and turns its errors into one readable message.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from jsonschema import exceptions, validators
from jsonschema.exceptions import SchemaError, ValidationError

__all__ = ["SchemaViolation", "compile_json_schema"]

_best_match = cast(
    Callable[[Iterable[ValidationError]], ValidationError | None],
    exceptions.best_match,  # pyright: ignore[reportUnknownMemberType]
)

_MAX_REPR = 80
_MAX_REASON = 160

_repr = reprlib.Repr()
# Bounded work on huge values: reprlib stops early; the result is cut to _MAX_REPR anyway.
_repr.maxstring = _MAX_REPR
_repr.maxother = _MAX_REPR
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8
_repr.maxlevel = 3


def _short(value: Any, limit: int = _MAX_REPR) -> str:
    text = _repr.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pointer(parts: Iterable[str | int]) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class SchemaViolation(ValueError):
    """A JSON value (or a prefix state of one) does not match its JSON Schema.

    Raised by the validators :func:`compile_json_schema` returns. The message names the JSON
    path that failed, what the schema expected there (the keyword and its value, and the
    schema location), what arrived (its repr, cut to about 80 characters) and how many other
    errors the value has; the error shown is the one jsonschema's ``best_match`` ranks first.
    ``__cause__`` is that jsonschema ``ValidationError``.

    Attributes:
        path: The JSON path of the value that failed, e.g. ``"$.items[3].price"``.
        keyword: The schema keyword that failed (``"type"``, ``"required"``...), or ``None``
            when a ``false`` schema rejected the value.
        schema_path: Where that keyword (or the ``false`` schema) sits in the schema, as a JSON
            pointer (``"#/$defs/item/properties/price/type"``, after ``$ref`` hops); for a
            prefix state, in the derived schema (the same place unless under a rewritten
            ``oneOf`` or ``if``).
        others: How many other errors the value has.
    """

    def __init__(
        self, message: str, *, path: str, keyword: str | None, schema_path: str, others: int
    ) -> None:
        super().__init__(message)
        self.path = path
        self.keyword = keyword
        self.schema_path = schema_path
        self.others = others


def _locate(root: Any, target: object) -> list[str | int] | None:
    """Where ``target`` (a subschema object) sits in ``root``: jsonschema's own schema paths
    skip the ``$ref`` hops, so they name places that do not exist in the schema."""
    stack: list[tuple[Any, list[str | int]]] = [(root, [])]
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if isinstance(node, dict):
            stack.extend((child, [*path, key]) for key, child in cast(dict[str, Any], node).items())
        elif isinstance(node, list):
            stack.extend((child, [*path, index]) for index, child in enumerate(cast(list[Any], node)))
    return None


def _violation(errors: list[ValidationError], what: str, root: Any) -> SchemaViolation:
    best = _best_match(errors) or errors[0]
    received = _short(best.instance)
    # jsonschema types `validator` as `str | Unset`; it is None for a `false` schema.
    keyword: Any = best.validator
    is_false = isinstance(best.schema, _FalseSchema)
    if is_false or not isinstance(keyword, str):
        word: str | None = None
        expected = "no value here"
        reason = "the schema is false"
    else:
        word = keyword
        expected = f"{keyword}={_short(best.validator_value)}"
        reason = _cut(best.message, _MAX_REASON)
    where = _locate(root, best.schema) if isinstance(best.schema, dict) else None
    if where is None:
        schema_path = _pointer(best.absolute_schema_path)
    else:
        schema_path = _pointer(where if is_false or word is None else [*where, word])
    others = len(errors) - 1
    message = (
        f"{what} does not match the JSON Schema at {best.json_path}: expected {expected}, "
        f"got {received} ({reason}; schema location {schema_path})"
    )
    if others:
        message += f"; and {others} other error{'s' if others > 1 else ''}"
    violation = SchemaViolation(
        message, path=best.json_path, keyword=word, schema_path=schema_path, others=others
    )
    violation.__cause__ = best
    return violation


# -- rewriting schemas -------------------------------------------------------------------------


class _FalseSchema(dict[str, Any]):
    """``{"not": {}}`` standing in for a ``false`` subschema.

    jsonschema (4.26) reports a ``false`` schema under ``properties``, ``items``... without the
    key or index that led to it (``$`` instead of ``$.legacy``); a keyword keeps the path.
    """

    def __init__(self) -> None:
        super().__init__({"not": {}})


# Keywords that report a `false` value themselves, with the path ("Additional properties are
# not allowed ('x' was unexpected)"): their `false` stays.
_SELF_REPORTING = frozenset(
    ("additionalProperties", "additionalItems", "unevaluatedProperties", "unevaluatedItems")
)

# Constraints a prefix state can fail and its completion pass: dropped at every depth.
_DROPPED = frozenset(
    (
        "required",
        "minProperties",
        "minItems",
        "minContains",
        "maxContains",
        "dependentRequired",
        "uniqueItems",
    )
)
# A prefix can match what the complete value will not: dropped too.
_NEGATIONS = frozenset(("not", "disallow"))
_ONE_SCHEMA = frozenset(
    (
        "additionalProperties",
        "unevaluatedProperties",
        "additionalItems",
        "unevaluatedItems",
        "propertyNames",
        "contains",
        "not",
        "then",
        "else",
        "if",
    )
)
_SCHEMA_MAPS = frozenset(("properties", "patternProperties", "dependentSchemas", "$defs", "definitions"))
_SCHEMA_LISTS = frozenset(("allOf", "anyOf", "oneOf", "prefixItems"))
# A schema, or (older drafts) a list of schemas; draft 3 `disallow` also lists type names.
_ONE_OR_LIST = frozenset(("items", "extends", "disallow"))


class _SchemaRewriter:
    """Copies a schema keyword by keyword, for one dialect (the keywords its validator knows).

    Both modes replace ``false`` subschemas by :class:`_FalseSchema`. With ``relax=True`` the
    copy is the prefix-state schema :func:`compile_json_schema` describes.
    """

    def __init__(self, keywords: Mapping[str, object], *, relax: bool) -> None:
        self._keywords = keywords
        self._relax = relax
        # Draft 2019-09 and later honour minContains (and count contains' matches as evaluated).
        self._min_contains = "unevaluatedItems" in keywords
        # 2020-12 `items: false` reports itself; older `items: false` applies to each item.
        self._items_reports = "prefixItems" in keywords

    def rewrite(self, schema: Any) -> Any:
        if schema is False:
            return _FalseSchema()
        if not isinstance(schema, dict):
            return schema  # true, or a value the dialect does not read as a schema
        src = cast(dict[str, Any], schema)
        known = self._keywords
        relax = self._relax
        out: dict[str, Any] = {}
        extra: list[Any] = []  # relaxed forms of oneOf and if/then/else, added under allOf
        for key, value in src.items():
            if relax and (key in _DROPPED or (key in _NEGATIONS and key in known)):
                continue
            if value is False and (key in _SELF_REPORTING or (key == "items" and self._items_reports)):
                out[key] = value
            elif relax and key == "contains" and key in known:
                if self._min_contains:
                    # Kept for unevaluatedItems, which counts the items contains matched.
                    out[key] = self.rewrite(value)
                    out["minContains"] = 0
                # Before 2019-09 contains always wants a match: nothing is left to check.
            elif relax and key == "oneOf" and key in known and isinstance(value, list):
                # Relaxed branches overlap (`{}` matches every object branch): "exactly one"
                # becomes "at least one".
                extra.append({"anyOf": self._list(value)})
            elif relax and key in ("if", "then", "else") and "if" in known:
                continue  # below: they go together
            elif key in _ONE_SCHEMA:
                out[key] = self.rewrite(value)
            elif key in _SCHEMA_MAPS:
                out[key] = self._map(value)
            elif key in _SCHEMA_LISTS:
                out[key] = self._list(value)
            elif key in _ONE_OR_LIST:
                out[key] = self._list(value) if isinstance(value, list) else self.rewrite(value)
            elif key == "dependencies":
                rewritten = self._dependencies(value)
                if rewritten or not relax:
                    out[key] = rewritten
            else:
                out[key] = value
        if relax and "if" in src and "if" in known:
            extra.append(self._condition(src))
        if extra:
            existing = out.get("allOf")
            out["allOf"] = [*cast(list[Any], existing), *extra] if isinstance(existing, list) else extra
        return out

    def _condition(self, src: dict[str, Any]) -> dict[str, Any]:
        # Whether a prefix will satisfy `if` is not known: when the complete value satisfies
        # `if`, the prefix satisfies the relaxed `if` and `then`; otherwise the relaxed `else`.
        then = self.rewrite(src.get("then", True))
        otherwise = self.rewrite(src.get("else", True))
        return {"anyOf": [{"allOf": [self.rewrite(src["if"]), then]}, otherwise]}

    def _map(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: self.rewrite(v) for k, v in cast(dict[str, Any], value).items()}

    def _list(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [self.rewrite(v) for v in cast(list[Any], value)]

    def _dependencies(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        deps = cast(dict[str, Any], value)
        if not self._relax:
            return {k: self.rewrite(v) if isinstance(v, dict | bool) else v for k, v in deps.items()}
        # A list (or draft 3 string) of property names is dependentRequired: dropped; a schema
        # is dependentSchemas: relaxed.
        return {k: self.rewrite(v) for k, v in deps.items() if isinstance(v, dict | bool)}


def _plain(value: Any) -> Any:
    """A private copy of the caller's schema: later changes to theirs do not reach ours."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in cast(Mapping[Any, Any], value).items()}
    if isinstance(value, list):
        return [_plain(v) for v in cast(list[Any], value)]
    return value


def compile_json_schema(schema: Mapping[str, Any]) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """Compile a JSON Schema into a validator for complete values and one for prefix states.

    The dialect comes from ``$schema`` (draft 3 to 2020-12; 2020-12 when absent or unknown).
    The schema is checked against its meta-schema and both validators are built here, once:
    validating a value costs only the validation. ``format`` stays an annotation, as JSON
    Schema specifies by default: ``"format": "email"`` does not reject ``"x"``.

    ``validate(value)`` returns ``value`` itself (JSON Schema does not transform) or raises
    :class:`SchemaViolation`.

    ``validate_partial(value)`` checks a *prefix state* of a value still streaming: objects
    with keys still to come, arrays with elements still to come, the last string or number
    cut short. It validates against a derived schema that accepts every prefix state of every
    valid value, by keyword, at every depth (a property *named* ``required``, and ``enum``,
    ``const``, ``default`` or ``examples`` values, are never touched; ``$defs`` and
    ``definitions`` are relaxed in place, so ``$ref`` keeps working):

    - dropped: ``required``, ``minProperties``, ``minItems``, ``dependentRequired`` and
      the property-name lists of draft 3-7 ``dependencies``, ``uniqueItems`` (a half-streamed item can equal an
      earlier one), ``not`` and draft 3 ``disallow`` (a prefix can match what the complete
      value will not),
      ``maxContains``; ``contains`` wants no match (``minContains: 0``; before 2019-09,
      where it always wants one, it is dropped);
    - ``oneOf`` becomes ``anyOf`` (relaxed branches overlap: ``{}`` matches every object
      branch), and ``if``/``then``/``else`` becomes ``anyOf: [allOf: [if, then], else]``
      (whether a prefix will satisfy ``if`` is not known yet);
    - every other subschema (``properties``, ``patternProperties``, ``additionalProperties``,
      ``unevaluatedProperties``, ``items``, ``prefixItems``, ``additionalItems``,
      ``unevaluatedItems``, ``propertyNames``, ``allOf``, ``anyOf``, ``dependentSchemas``,
      schema-valued ``dependencies``) is relaxed the same way; so a wrong type or a key
      ``additionalProperties: false`` forbids is still rejected.

    Trade-off: the string or number still streaming is checked as it stands, so ``enum``,
    ``const``, ``pattern``, ``minLength``, ``minimum``, ``multipleOf``... can reject a prefix
    state whose completion is valid (``"pend"`` before ``"pending"``; ``1`` before ``12``).
    The pydantic path behaves the same: ``parse_json`` then carries ``parsed=None``. The
    derivation follows the root's dialect and the keywords above: a ``$ref`` into a
    subschema that is dropped or rewritten (under ``not``, ``oneOf``, ``if``) does not
    resolve, and an embedded resource with its own ``$schema`` is relaxed by the root's rules.

    ``$ref`` targets are resolved when a value first reaches them: a ``$ref`` that resolves
    nowhere raises jsonschema's referencing error then, not :class:`SchemaViolation`.

    Args:
        schema: A JSON Schema object (a mapping). Not modified; later changes to it do not
            affect the validators.

    Returns:
        ``(validate, validate_partial)``.

    Raises:
        ValueError: ``schema`` is not a mapping, or not a valid JSON Schema of its dialect
            (the message gives jsonschema's reason and where in the schema).

    Example:
        >>> validate, validate_partial = compile_json_schema(
        ...     {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        ... )
        >>> validate({"n": 1})
        {'n': 1}
        >>> validate_partial({})
        {}
    """
    if not isinstance(schema, Mapping):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"parse_json(schema=...) expected a JSON Schema dict, got {_short(schema)}")
    own = cast(dict[str, Any], _plain(schema))
    validator_class = validators.validator_for(own, default=validators.Draft202012Validator)
    try:
        validator_class.check_schema(own)
    except SchemaError as exc:
        raise ValueError(
            f"parse_json(schema=...) expected a valid JSON Schema, got: {_cut(exc.message, _MAX_REASON)} "
            f"at {exc.json_path} (schema location {_pointer(exc.absolute_schema_path)} of the "
            f"{validator_class.__name__} meta-schema)"
        ) from exc
    keywords = cast(Mapping[str, object], validator_class.VALIDATORS)
    full_schema = _SchemaRewriter(keywords, relax=False).rewrite(own)
    relaxed_schema = _SchemaRewriter(keywords, relax=True).rewrite(own)
    full = validator_class(full_schema)
    relaxed = validator_class(relaxed_schema)

    def validate(value: Any) -> Any:
        errors = list(full.iter_errors(value))
        if errors:
            raise _violation(errors, "JSON value", full_schema)
        return value

    def validate_partial(value: Any) -> Any:
        errors = list(relaxed.iter_errors(value))
        if errors:
            raise _violation(errors, "partial JSON value", relaxed_schema)
        return value

    return validate, validate_partial
