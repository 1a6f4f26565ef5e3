"""A compiled fast path for loading ingest payloads with the marshmallow schemas.

marshmallow spends most of a batch's validation time in its per-field machinery
(error stores, hooks, partial handling). :func:`compile_loader` walks a schema's
declared fields once and builds plain functions that check the same rules and
build the same result (same keys, in the same order). The fast path only says
"valid, here is the result": whenever it meets anything it does not vouch for
(an invalid value, ``None``, a non-``dict`` mapping, a field type it does not
know), it gives up and the caller runs ``schema.load``, so errors, messages and
edge cases stay exactly marshmallow's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, missing, validate

Loader = Callable[[Any], Any]


class GiveUp(Exception):
    """The fast path cannot vouch for this input; marshmallow must decide."""


class NotCompilable(Exception):
    """A schema or field the fast path does not know how to mirror."""


def _validator(check: Any) -> Callable[[Any], None]:
    if type(check) is validate.Length:
        low, high, equal = check.min, check.max, check.equal

        def length(value: Any) -> None:
            size = len(value)
            if equal is not None:
                if size != equal:
                    raise GiveUp
            elif (low is not None and size < low) or (high is not None and size > high):
                raise GiveUp

        return length
    if type(check) is validate.OneOf:
        choices = check.choices

        def one_of(value: Any) -> None:
            if value not in choices:
                raise GiveUp

        return one_of

    def generic(value: Any) -> None:
        try:
            if check(value) is False:
                raise GiveUp
        except ValidationError as exc:
            raise GiveUp from exc

    return generic


def _with_validators(load: Loader, field: fields.Field[Any]) -> Loader:
    checks = [_validator(v) for v in field.validators]
    if not checks:
        return load

    def checked(value: Any) -> Any:
        result = load(value)
        for check in checks:
            check(result)
        return result

    return checked


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise GiveUp
    return value


def _field(field: fields.Field[Any], special: dict[type, Callable[[fields.Field[Any]], Loader]]) -> Loader:
    """A loader for one non-missing, non-``None`` value of ``field``."""
    if field.allow_none or field.load_default is not missing or field.pre_load or field.post_load:
        raise NotCompilable(repr(field))
    for kind, build in special.items():
        if isinstance(field, kind):
            return _with_validators(build(field), field)
    if isinstance(field, fields.Nested):
        if field.many or not isinstance(field.schema, Schema):
            raise NotCompilable(repr(field))
        return _with_validators(compile_loader(field.schema, special), field)
    if isinstance(field, fields.List):
        inner = _field(field.inner, special)

        def items(value: Any) -> Any:
            if type(value) is not list:
                raise GiveUp
            return [inner(item) for item in value]

        return _with_validators(items, field)
    if type(field) is fields.String:
        return _with_validators(_string, field)
    raise NotCompilable(repr(field))


def compile_loader(
    schema: Schema,
    special: dict[type, Callable[[fields.Field[Any]], Loader]] | None = None,
    *,
    allowed_hooks: frozenset[str] = frozenset(),
) -> Loader:
    """A function returning ``schema.load(data)`` for valid data, or raising :class:`GiveUp`.

    ``special`` maps field classes to builders of their loaders (custom fields);
    ``allowed_hooks`` names schema hooks the caller re-checks itself.
    """
    special = special or {}
    hooks = [name for entries in schema._hooks.values() for name, *_ in entries]
    if schema.many or schema.opts.unknown != EXCLUDE or set(hooks) - allowed_hooks:
        raise NotCompilable(type(schema).__name__)
    entries: list[tuple[str, str, bool, Loader]] = []
    for name, field in schema.load_fields.items():
        target = field.attribute or name
        if "." in target:
            raise NotCompilable(target)
        key = field.data_key if field.data_key is not None else name
        entries.append((key, target, field.required, _field(field, special)))

    def load(data: Any) -> Any:
        if type(data) is not dict:
            raise GiveUp
        result: dict[str, Any] = {}
        for key, target, required, loader in entries:
            value = data.get(key, missing)
            if value is missing:
                if required:
                    raise GiveUp
                continue
            if value is None:
                raise GiveUp
            result[target] = loader(value)
        return result

    return load
