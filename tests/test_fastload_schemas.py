"""``compile_loader`` on schemas that use what marshmallow offers beyond the shipped ones.

For each schema, the compiled loader either is refused (:class:`NotCompilable`) or, on the
schema's examples and every single edit of them, returns what ``schema.load`` returns (same
types, same key order) or gives up; it never accepts what marshmallow rejects.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate, validates

from flask_heat_collector.fastload import GiveUp, Loader, NotCompilable, compile_loader

from .test_fastload import edited, single_edits


class Inner(Schema):
    class Meta:
        unknown = EXCLUDE

    a = fields.String(required=True)
    b = fields.String(data_key="B")


class Strict(Schema):  # marshmallow's default: unknown=RAISE
    a = fields.String()
    secret = fields.String(dump_only=True)


class Nests(Schema):
    class Meta:
        unknown = EXCLUDE

    inner = fields.Nested(Inner, unknown=RAISE)
    items = fields.List(fields.Nested(Inner, unknown=RAISE))


class NestsInstances(Schema):
    class Meta:
        unknown = EXCLUDE

    strict = fields.Nested(Inner(unknown=RAISE))
    loose = fields.Nested(Inner(unknown=RAISE), unknown=EXCLUDE)


class NestsStrict(Schema):
    class Meta:
        unknown = EXCLUDE

    strict = fields.Nested(Strict)
    picked = fields.Nested(Strict, only=("a",))
    many = fields.Nested(Inner, many=True, validate=validate.Length(min=1))


class Flat(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(validate=validate.Length(min=1))
    from_ = fields.String(data_key="from", attribute="from")


class Included(Schema):
    class Meta:
        unknown = INCLUDE

    a = fields.String()


class Lower(fields.List[str]):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return [str(item).lower() for item in super()._deserialize(value, attr, data, **kwargs)]


class Half(fields.Integer):
    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        return super()._deserialize(value, attr, data, **kwargs) // 2


class Loud(Inner):
    def load(self, *args: Any, **kwargs: Any) -> Any:
        result: dict[str, Any] = super().load(*args, **kwargs)
        result["seen"] = True
        return result


class Hooked(Inner):
    @post_load
    def mark(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {**data, "hooked": True}


class Oddities(Schema):
    class Meta:
        unknown = EXCLUDE

    included = fields.Nested(Included)
    hooked = fields.Nested(Hooked)
    mail = fields.Email()
    stripped = fields.String(pre_load=str.strip, post_load=str.upper)
    nullable = fields.String(allow_none=True)
    defaulted = fields.String(load_default="d")
    count = fields.Integer(validate=lambda n: n > 0)


class Excluding(Schema):
    class Meta:
        unknown = EXCLUDE


def _schema(**declared: fields.Field[Any]) -> Schema:
    """An instance of a schema class declaring the fields ``declared``."""
    return Excluding.from_dict(declared)()


class Node(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    child = fields.Nested(lambda: Node(unknown=RAISE))


class Ordered(Flat):
    dict_class = OrderedDict


class PostLoaded(Flat):
    @post_load
    def mark(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {**data, "hooked": True}


class Validated(Flat):
    @validates("name")
    def no_x(self, value: str, **kwargs: Any) -> None:
        if "x" in value:
            raise ValidationError("No x.")


class Overridden(Flat):
    def _deserialize(self, *args: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(*args, **kwargs)
        assert isinstance(result, dict)
        return {**result, "seen": True}


def _exact_int(_field: fields.Field[Any]) -> Loader:
    def load(value: Any) -> Any:
        if type(value) is not int:
            raise GiveUp
        return value

    return load


@dataclass
class Case:
    schema: Schema
    examples: list[Any]
    special: dict[type, Callable[[fields.Field[Any]], Loader]] = field(default_factory=dict)
    refused: bool = False


INNER = {"a": "x", "B": "y"}
CASES = {
    "Nested(unknown=RAISE)": Case(
        Nests(), [{"inner": INNER, "items": [INNER, {"a": "z"}]}, {"inner": {"a": "x", "b": "y"}, "items": []}]
    ),
    "Nested(Schema(unknown=RAISE))": Case(
        NestsInstances(), [{"strict": INNER, "loose": {"a": "x", "zz": 1}}, {"strict": {"a": "x", "zz": None}}]
    ),
    "Schema(unknown=RAISE), data_key": Case(
        Flat(unknown=RAISE), [{"name": "n", "from": "/a"}, {"name": "n", "from_": "/a"}, {"name": ""}]
    ),
    "Meta.unknown=RAISE, dump_only, only=, many=": Case(
        NestsStrict(),
        [
            {"strict": {"a": "x"}, "picked": {"a": "x"}, "many": [INNER]},
            {"strict": {"a": "x", "secret": "s"}, "picked": {"a": "x", "secret": "s"}, "many": []},
        ],
    ),
    "Pluck": Case(_schema(plucked=fields.Pluck(Inner, "a")), [{"plucked": "x"}, {"plucked": {"a": "x"}}]),
    "a List subclass": Case(_schema(lowered=Lower(fields.String())), [{"lowered": ["A", "b"]}]),
    "a subclass of a special field": Case(_schema(half=Half()), [{"half": 4}], {fields.Integer: _exact_int}),
    "a nested schema overriding load": Case(_schema(loud=fields.Nested(Loud)), [{"loud": INNER}]),
    "a recursive schema": Case(Node(), [{"name": "a", "child": {"name": "b", "child": {"name": "c", "zz": 1}}}]),
    "OneOf(set) given a list": Case(
        _schema(tags=fields.List(fields.String(), validate=validate.OneOf(frozenset({"a"})))), [{"tags": ["a"]}]
    ),
    "hooks, INCLUDE, pre_load, allow_none, load_default below the top": Case(
        Oddities(),
        [
            {
                "included": {"a": "x", "zz": [1]},
                "hooked": INNER,
                "mail": "a@b.co",
                "stripped": " s ",
                "nullable": None,
                "count": 3,
            },
            {"mail": "not a mail", "count": 0},
        ],
    ),
    "dict_class": Case(Ordered(), [{"name": "n"}], refused=True),
    "post_load": Case(PostLoaded(), [{"name": "n"}], refused=True),
    "validates": Case(Validated(), [{"name": "n"}, {"name": "x"}], refused=True),
    "an overridden Schema method": Case(Overridden(), [{"name": "n"}], refused=True),
    "many": Case(Flat(many=True), [[{"name": "n"}]], refused=True),
    "partial": Case(Inner(partial=True), [{"B": "y"}], refused=True),
    "unknown=INCLUDE": Case(Included(), [{"a": "x", "zz": 1}], refused=True),
}


def outcome(load: Callable[[Any], Any], data: Any) -> tuple[str, str]:
    try:
        result = load(copy.deepcopy(data))
    except ValidationError as exc:
        return "error", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - compared as they are
        return "raised", type(exc).__name__
    return "ok", repr(result)


def check(case: Case, data: Any) -> bool:
    """Whether the fast path vouched for ``data``; fails if it vouched for anything but marshmallow's result."""
    fast = compile_loader(case.schema, case.special)
    got = outcome(fast, data)
    expected = outcome(case.schema.load, data)
    if got[0] == "ok":
        assert got == expected, data
        return True
    assert got in (("raised", "GiveUp"), expected), (got, expected, data)  # or marshmallow's own exception
    return False


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if not case.refused])
def test_single_edits(name: str) -> None:
    case = CASES[name]
    for data in case.examples:
        if outcome(case.schema.load, data)[0] == "ok":
            assert check(case, data), f"valid example not vouched for: {data}"
        for edit in single_edits(data):
            check(case, edit)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.data())
def test_random_edits(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from([name for name, case in CASES.items() if not case.refused]))
    check(CASES[name], data.draw(edited(CASES[name].examples)))


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.refused])
def test_refused(name: str) -> None:
    with pytest.raises(NotCompilable):
        compile_loader(CASES[name].schema)
