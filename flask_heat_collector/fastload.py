"""A compiled fast path for loading data with marshmallow schemas.

marshmallow spends most of a batch's validation time in its per-field machinery (error stores,
hooks, partial handling). :func:`compile_loader` walks a schema's load fields once and builds plain
functions that check the same rules and build the same result (same keys in the same order, same
types). A compiled loader only ever says "valid, here is what ``schema.load(data)`` returns": on
anything it does not vouch for (an invalid value, ``None``, ``bytes`` for a string, a tuple for a
list, ...) it raises :class:`GiveUp` and the caller runs ``schema.load``, so errors and messages
stay marshmallow's. It mirrors ``schema.load(data)`` without other arguments, for the schema as it
was when compiled.

What is mirrored, and how:

- A field is checked inline when it is exactly a ``String``, ``List``, single ``Nested`` or a class
  the caller names in ``special``, without ``allow_none``, ``load_default``, ``pre_load`` or
  ``post_load``; its validators run after it (``Length`` and ``OneOf`` inline). Any other field (a
  subclass, ``Pluck``, ``Nested(many=True)``, ``Email``, ...) is loaded by its public
  ``Field.deserialize`` with the arguments marshmallow passes: exactly what ``schema.load`` runs.
- A nested schema is compiled like the top one, with the ``unknown`` marshmallow uses for it (the
  field's, else the nested schema's): ``EXCLUDE`` ignores unknown keys, ``RAISE`` gives up on them.
  A nested schema that cannot be compiled, or that nests itself, is loaded by its field's
  ``deserialize``, that is by marshmallow.
- The top schema is refused with :class:`NotCompilable` (the caller then always runs
  ``schema.load``; refusing is the safe choice, never a guess) when it has ``many``, ``partial``,
  ``unknown=INCLUDE``, a hook not in ``allowed_hooks``, a class or mixin (or the instance)
  redefining a method or class of :class:`~marshmallow.Schema` other than ``__init__`` and ``Meta``
  (``load``, ``_deserialize``, ``dict_class``, ...), or a field ``attribute`` with a dot.

Only public marshmallow API is read: ``load_fields``, ``unknown``, ``many``, ``partial``, the
fields' attributes and ``validators``, ``Field.deserialize``, and ``SchemaMeta.resolve_hooks()``
for the decorated hooks. The rules are marshmallow 4's (4.3 added field ``pre_load`` and
``post_load``): the package requires ``marshmallow>=4.3,<5``, and a new major version must be
checked against this module first.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing, validate

Loader = Callable[[Any], Any]
Special = Mapping[type, Callable[[fields.Field[Any]], Loader]]

# Names a Schema subclass may define without changing how loading works.
_MAY_REDEFINE = frozenset({"__init__", "Meta", "__dict__", "__weakref__"})
_SCHEMA_NAMES = frozenset(dir(Schema)) - _MAY_REDEFINE


class GiveUp(Exception):
    """The fast path cannot vouch for this input; marshmallow must decide."""


class NotCompilable(Exception):
    """A schema the fast path cannot mirror exactly."""


def compile_loader(
    schema: Schema, special: Special | None = None, *, allowed_hooks: frozenset[str] = frozenset()
) -> Loader:
    """A function returning ``schema.load(data)`` for data it vouches for, else raising :class:`GiveUp`.

    ``special`` maps field classes (exact classes, not their subclasses) to builders of loaders
    that take a present, non-``None`` value and return the loaded value or raise :class:`GiveUp`;
    a builder may raise :class:`NotCompilable` to leave its field to ``Field.deserialize``.
    ``allowed_hooks`` names hooks of ``schema`` that the caller runs or re-checks itself; they must
    not change the data.
    A loader may also raise whatever a field or validator raised; that too means "ask marshmallow".
    """
    return _compile(schema, schema.unknown, special or {}, allowed_hooks, frozenset())


def _refusal(schema: Schema, unknown: str, allowed_hooks: frozenset[str]) -> str | None:
    """Why ``schema`` cannot be mirrored, or ``None``."""
    if schema.many or schema.partial is not None:
        return "many or partial"
    if unknown not in (EXCLUDE, RAISE):
        return f"unknown={unknown}"
    redefined = _redefined(vars(schema))
    if redefined:
        return f"the instance redefines {redefined}"
    return _class_refusal(type(schema), allowed_hooks)


@functools.lru_cache(maxsize=256)
def _class_refusal(kind: type[Schema], allowed_hooks: frozenset[str]) -> str | None:
    hooks = {name for entries in kind.resolve_hooks().values() for name, *_ in entries} - allowed_hooks
    if hooks:
        return f"hooks {sorted(hooks)}"
    for cls in kind.__mro__:
        redefined = None if cls in Schema.__mro__ else _redefined(vars(cls))
        if redefined:
            return f"{cls.__name__} redefines {redefined}"
    return None


def _redefined(namespace: Mapping[str, Any]) -> str | None:
    """The first method or class of ``Schema`` that ``namespace`` redefines."""
    for name, value in namespace.items():
        if name in _SCHEMA_NAMES and (callable(value) or hasattr(value, "__get__")):
            return name
    return None


def _compile(
    schema: Schema, unknown: str, special: Special, allowed_hooks: frozenset[str], seen: frozenset[type]
) -> Loader:
    why = _refusal(schema, unknown, allowed_hooks)
    if why is not None:
        raise NotCompilable(f"{type(schema).__name__}: {why}")
    seen |= {type(schema)}
    # (data key, result key, required, loader); required is None when Field.deserialize decides.
    entries: list[tuple[str, str, bool | None, Any]] = []
    for name, field in schema.load_fields.items():
        target = field.attribute or name
        if "." in target:
            raise NotCompilable(f"{type(schema).__name__}: attribute {target!r}")
        key = field.data_key if field.data_key is not None else name
        loader = _inline(field, special, seen)
        if loader is None:
            entries.append((key, target, None, field.deserialize))
        else:
            entries.append((key, target, field.required, loader))
    known = frozenset(key for key, *_ in entries)
    strict = unknown == RAISE

    def load(data: Any) -> Any:
        if type(data) is not dict or (strict and not known.issuperset(data)):
            raise GiveUp
        result: dict[str, Any] = {}
        for key, target, required, loader in entries:
            value = data.get(key, missing)
            if required is None:
                try:
                    value = loader(value, key, data)
                except ValidationError as exc:
                    raise GiveUp from exc
                if value is not missing:
                    result[target] = value
            elif value is missing:
                if required:
                    raise GiveUp
            elif value is None:
                raise GiveUp
            else:
                result[target] = loader(value)
        return result

    return load


def _inline(field: fields.Field[Any], special: Special, seen: frozenset[type]) -> Loader | None:
    """A loader of one present, non-``None`` value of ``field``; ``None`` leaves it to ``Field.deserialize``."""
    if field.allow_none or field.load_default is not missing or field.pre_load or field.post_load:
        return None
    kind = type(field)
    load: Loader | None = None
    if kind in special:
        try:
            load = special[kind](field)
        except NotCompilable:
            return None
    elif kind is fields.String:
        load = _string
    elif isinstance(field, fields.List) and kind is fields.List:
        load = _list(field.inner, special, seen)
    elif isinstance(field, fields.Nested) and kind is fields.Nested and not field.many:
        nested = field.schema
        if type(nested) in seen:
            return None
        try:
            unknown = field.unknown if field.unknown is not None else nested.unknown
            load = _compile(nested, unknown, special, frozenset(), seen)
        except NotCompilable:
            return None
    return None if load is None else _with_validators(load, field)


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise GiveUp
    return value


def _list(inner: fields.Field[Any], special: Special, seen: frozenset[type]) -> Loader:
    item = _inline(inner, special, seen)
    if item is None:
        deserialize = inner.deserialize

        def generic(value: Any) -> Any:
            if type(value) is not list:
                raise GiveUp
            try:
                return [deserialize(each) for each in value]
            except ValidationError as exc:
                raise GiveUp from exc

        return generic

    def items(value: Any) -> Any:
        if type(value) is not list or None in value:
            raise GiveUp
        return [item(each) for each in value]

    return items


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


def _validator(check: Callable[[Any], Any]) -> Callable[[Any], None]:
    if isinstance(check, validate.Length) and type(check) is validate.Length:
        low, high, equal = check.min, check.max, check.equal

        def length(value: Any) -> None:
            size = len(value)
            if equal is not None:
                if size != equal:
                    raise GiveUp
            elif (low is not None and size < low) or (high is not None and size > high):
                raise GiveUp

        return length
    if isinstance(check, validate.OneOf) and type(check) is validate.OneOf:
        choices = check.choices

        def one_of(value: Any) -> None:
            try:
                found = value in choices
            except TypeError as exc:
                raise GiveUp from exc
            if not found:
                raise GiveUp

        return one_of

    def call(value: Any) -> None:
        try:
            check(value)
        except ValidationError as exc:
            raise GiveUp from exc

    return call
