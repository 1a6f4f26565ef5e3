"""The ingest fast path answers exactly as marshmallow does: same result, or the same errors.

Each shipped batch shape is edited at every place it has (top level, sdk, app, session, user and
its traits, each event type, viewport, device, meta, props, points): a value set to ``None`` or to
a value of a wrong type, a key dropped, an unknown key added. The exhaustive single edits cover
every place; hypothesis adds random runs of several edits.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from flask_heat_collector.schemas import EVENT_TYPES, IngestSchema

from .helpers import batch, event, sdk_fixture

Path = tuple[Any, ...]

WRONG: list[Any] = [
    None,
    True,
    0,
    -1,
    2.5,
    10**20,
    math.nan,
    "",
    "x",
    "click",
    b"x",
    [],
    [None],
    ["x"],
    {},
    {"zz": 1},
]
UNKNOWN_KEYS = ("zz", "from_")
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=3)
    | st.sampled_from(["click", "focus", "editing", "1200x800", "x" * 1025])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "y", "zz", "id"]), inner),
    max_leaves=5,
)


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every place in ``value``, itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def edit(doc: Any, path: Path, op: str, value: Any = None, key: str = "zz") -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced (``set``), removed (``drop``) or,
    for an object, given one more key (``add``)."""
    doc = copy.deepcopy(doc)
    if op == "set" and not path:
        return value
    parent = doc
    for step in path[:-1] if op != "add" else path:
        parent = parent[step]
    if op == "add":
        parent[key] = value
    elif op == "drop":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def single_edits(doc: Any) -> list[Any]:
    """``doc`` itself and each edit of one place in it: every wrong value, a drop, unknown keys."""
    cases = [doc]
    for path in paths(doc):
        cases += [edit(doc, path, "set", value) for value in WRONG]
        if path:
            cases.append(edit(doc, path, "drop"))
        target: Any = doc
        for step in path:
            target = target[step]
        if isinstance(target, dict):
            cases += [edit(doc, path, "add", 1, key) for key in UNKNOWN_KEYS]
    return cases


@st.composite
def edited(draw: st.DrawFn, docs: list[Any]) -> Any:
    """One of ``docs`` after one to three random edits."""
    doc = copy.deepcopy(draw(st.sampled_from(docs)))
    for _ in range(draw(st.integers(1, 3))):
        every = paths(doc)
        path = draw(st.sampled_from(every))
        target: Any = doc
        for step in path:
            target = target[step]
        ops = ["set", *(["drop"] if path else []), *(["add"] if isinstance(target, dict) else [])]
        op = draw(st.sampled_from(ops))
        keys = sorted({str(p[-1]) for p in every if p and isinstance(p[-1], str)} | set(UNKNOWN_KEYS))
        doc = edit(doc, path, op, draw(JSON_VALUES), draw(st.sampled_from(keys)))
    return doc


def outcome(load: Callable[[Any], Any], data: Any) -> tuple[str, str]:
    """What ``load`` made of a copy of ``data``: the result's repr (types and key order count) or the errors."""
    try:
        result = load(copy.deepcopy(data))
    except ValidationError as exc:
        return "error", repr(exc.messages)
    except Exception as exc:  # noqa: BLE001 - compared as they are
        return "raised", type(exc).__name__
    return "ok", repr(result)


def shipped_batches() -> list[dict[str, Any]]:
    """A batch of each event type with every optional part, and one of three events."""
    extra: dict[str, dict[str, Any]] = {
        "move": {"points": [{"x": 1, "y": 2.5, "tsOffset": 0}, {"x": -3, "y": 4, "tsOffset": 16}]},
        "pageview": {"from": "/a"},
        "click": {"meta": {"viewportBucket": "1200x800", "list": [1, {"a": None}]}},
    }
    batches = []
    for kind in EVENT_TYPES:
        body = batch(event(kind, **extra.get(kind, {})), user={"id": "u-1", "traits": {"plan": "pro"}})
        body["app"] = {"name": "shop", "version": "1.2", "env": "prod"}
        body["session"]["lastSeenAt"] = 1.5
        batches.append(body)
    return [*batches, batch(event("click"), event("scroll"), event("keyboard"))]


@functools.cache
def ingest_schema(max_events: int) -> IngestSchema:
    return IngestSchema(max_events)


def check(max_events: int, cases: list[Any]) -> None:
    """``load_payload`` (the fast path, then marshmallow) and ``load`` (marshmallow) agree on each case."""
    schema = ingest_schema(max_events)
    for data in cases:
        assert outcome(schema.load_payload, data) == outcome(schema.load, data), data


def test_every_single_edit_of_every_batch_shape() -> None:
    cases = [case for body in shipped_batches() for case in single_edits(body)]
    assert len(cases) > 5000
    check(1000, cases)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(data=edited([*shipped_batches(), sdk_fixture()["body"]]), max_events=st.sampled_from([1000, 2]))
def test_random_edits(data: Any, max_events: int) -> None:
    """Several edits at once, on every shape and on the real SDK batch; a cap below the batch size too."""
    check(max_events, [data])


def test_valid_batches_skip_marshmallow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed the fast path exists for: a valid batch never reaches ``schema.load``."""
    schema, reference = IngestSchema(1000), IngestSchema(1000)

    def slow(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fast path gave a valid batch to marshmallow")

    monkeypatch.setattr(schema, "load", slow)
    for body in [*shipped_batches(), sdk_fixture()["body"]]:
        assert repr(schema.load_payload(copy.deepcopy(body))) == repr(reference.load(copy.deepcopy(body)))
