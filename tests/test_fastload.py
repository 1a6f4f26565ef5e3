"""The compiled ingest loader gives exactly marshmallow's result or exactly its errors."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
from marshmallow import ValidationError

from flask_heat_collector.schemas import IngestSchema

from .helpers import batch, event, sdk_fixture

KINDS = ("click", "move", "scroll", "pageview", "custom", "input", "keyboard")
ODD_VALUES: list[Any] = [
    None,
    True,
    "",
    "x" * 2000,
    -1,
    0,
    1.5,
    10**20,
    10**400,
    math.nan,
    math.inf,
    [],
    {},
    [1, 2],
    {"a": {"b": 1}},
    b"bytes",
    ("tuple",),
    "click",
    "focus",
    "editing",
]


def _outcome(schema: IngestSchema, data: Any, fast: bool) -> tuple[str, str]:
    try:
        result = schema.load_payload(copy.deepcopy(data)) if fast else schema.load(copy.deepcopy(data))
    except ValidationError as exc:
        return "error", repr(exc.messages)
    except Exception as exc:  # noqa: BLE001 - compared as they are
        return "raised", type(exc).__name__
    return "ok", json.dumps(result, default=str)  # key order matters: stored JSON keeps it


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(data: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    data = copy.deepcopy(data)
    path = rng.choice(_paths(data)[1:])
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.25 and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = rng.choice(ODD_VALUES)
    return data


def _sample_batches() -> list[dict[str, Any]]:
    events = [event(kind) for kind in KINDS]
    events.append(event("move", points=[{"x": i, "y": i * 2.5, "tsOffset": i} for i in range(5)], meta={"k": [1]}))
    events.append(event("pageview", **{"from": "/a"}, extra="ignored"))
    samples = [
        batch(*events, user={"id": "u-1", "traits": {"plan": "pro"}}),
        batch(event("click"), started_at=None, last_seen_at=None),
        sdk_fixture()["body"],
    ]
    samples[0]["app"] = {"name": "shop", "env": "prod", "unknown": 1}
    return samples


@pytest.mark.parametrize("max_events", [1000, 3])
def test_fast_loader_matches_marshmallow(max_events: int) -> None:
    schema = IngestSchema(max_events)
    assert schema._fast is not None  # the shipped schemas compile
    rng = random.Random(20240601 + max_events)
    cases: list[Any] = [*_sample_batches(), [], "text", {"": [1]}]
    for sample in _sample_batches():
        cases += [_mutate(sample, rng) for _ in range(400)]
    for data in cases:
        assert _outcome(schema, data, fast=True) == _outcome(schema, data, fast=False), data
