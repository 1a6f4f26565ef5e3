"""The served OpenAPI document states every limit the marshmallow schemas enforce, for the app's own settings.

The walk below reads the validators of every field of :mod:`flask_heat_collector.schemas` and looks for
each in the document, so a limit added to a schema and missing from the document fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from marshmallow import Schema, fields, validate

from flask_heat_collector import schemas
from flask_heat_collector.schemas import EVENT_SCHEMAS, EventField, JsonObject, Number

from .helpers import backend_free

pytestmark = backend_free
Json = dict[str, Any]
PROJECT = "/api/projects/{projectId}"
QUERY_SCHEMAS: dict[type[Schema], list[str]] = {
    schemas.HeatmapQuerySchema: [f"{PROJECT}/heatmap"],
    schemas.ScrollmapQuerySchema: [f"{PROJECT}/scrollmap"],
    schemas.ElementsQuerySchema: [f"{PROJECT}/elements"],
    schemas.PathsQuerySchema: [f"{PROJECT}/paths"],
    schemas.PageGroupPreviewQuerySchema: [f"{PROJECT}/page-groups/preview"],
    schemas.CompareQuerySchema: [f"{PROJECT}/compare"],
    schemas.EventsQuerySchema: [f"{PROJECT}/events"],
    schemas.SessionsQuerySchema: [f"{PROJECT}/sessions"],
    schemas.SessionDetailQuerySchema: [f"{PROJECT}/sessions/{{sessionId}}", "/api/sessions/{sessionId}"],
}
TIME_PARAMS = {"from", "to"}  # parsed by the view (unix ms or a date), not by a schema


def document(app: Flask) -> Json:
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    result: Json = response.get_json()
    return result


def limits(field: fields.Field[Any]) -> Json:
    """The JSON Schema keywords stating what ``field`` enforces."""
    found: Json = {}
    if isinstance(field, Number):
        found.update(minimum=field.min_value, maximum=field.max_value)
    if isinstance(field, JsonObject):
        found.update({"type": "object", "x-maxDepth": schemas.MAX_OBJECT_DEPTH, "x-maxBytes": schemas.MAX_OBJECT_BYTES})
    for rule in field.validators:
        if isinstance(rule, validate.Range):
            if rule.min is not None:
                found["minimum" if rule.min_inclusive else "exclusiveMinimum"] = rule.min
            if rule.max is not None:
                found["maximum" if rule.max_inclusive else "exclusiveMaximum"] = rule.max
        elif isinstance(rule, validate.Length):
            kind = "Items" if isinstance(field, fields.List) else "Length"
            if rule.min is not None:
                found[f"min{kind}"] = rule.min
            if rule.max is not None:
                found[f"max{kind}"] = rule.max
        elif isinstance(rule, validate.OneOf):
            found["enum"] = list(rule.choices)
        elif isinstance(rule, validate.Regexp):
            found["pattern"] = rule.regex.pattern
        else:
            raise AssertionError(f"{field.name}: no check for {rule!r}; state it in the document, then here")
    return found


def check_schema(schema: Schema, component: Json, where: str, components: Json) -> list[str]:
    """The limits of ``schema`` (and of the schemas it nests) that ``component`` leaves out."""
    missing: list[str] = []
    required = sorted(f.data_key or name for name, f in schema.fields.items() if f.required)
    if sorted(component.get("required", [])) != required:
        missing.append(f"{where}: required {required}")
    for name, field in schema.fields.items():
        key = field.data_key or name
        missing += check_field(field, component.get("properties", {}).get(key, {}), f"{where}.{key}", components)
    return missing


def check_field(field: fields.Field[Any], prop: Json, where: str, components: Json) -> list[str]:
    missing = [f"{where} {k}={v!r}" for k, v in limits(field).items() if prop.get(k) != v]
    if isinstance(field, fields.Nested):
        assert isinstance(field.schema, Schema)
        missing += check_schema(field.schema, prop, where, components)
    elif isinstance(field, fields.List):
        missing += check_field(field.inner, prop.get("items", {}), f"{where}[]", components)
    elif isinstance(field, EventField):
        refs = [ref["$ref"].rsplit("/", 1)[-1] for ref in prop.get("oneOf", [])]
        for kind, name in zip(EVENT_SCHEMAS, refs, strict=False):
            if components[name]["properties"]["type"].get("const") != kind:
                missing.append(f"{where}: {name}.type const={kind!r}")
        if len(refs) != len(EVENT_SCHEMAS):
            missing.append(f"{where}: oneOf the {len(EVENT_SCHEMAS)} event types")
    elif type(field).__module__ == schemas.__name__ and not isinstance(field, (Number, JsonObject)):
        raise AssertionError(f"{where}: no check for {type(field).__name__}; state it in the document, then here")
    return missing


def check_query(schema: type[Schema], operation: Json, where: str) -> list[str]:
    """The limits of the query ``schema`` that the parameters of ``operation`` leave out."""
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query" and p["name"] not in TIME_PARAMS}
    fields_ = schema().fields
    missing = [f"{where}: parameter {name} is in no schema" for name in params if name not in fields_]
    for name, field in fields_.items():
        param = params.get(name)
        if param is None:
            missing.append(f"{where}: undocumented parameter {name}")
            continue
        if param["required"] != field.required:
            missing.append(f"{where}?{name} required={field.required}")
        missing += [f"{where}?{name} {k}={v!r}" for k, v in limits(field).items() if param["schema"].get(k) != v]
    return missing


def drift(doc: Json, max_events: int) -> list[str]:
    """Every limit of the schemas that ``doc`` leaves out, as ``where keyword=value``."""
    components = doc["components"]["schemas"]
    missing: list[str] = []
    for kind, schema in EVENT_SCHEMAS.items():
        missing += check_schema(schema, components[f"{kind.capitalize()}Event"], kind, components)
    batch = components["IngestBatch"]
    missing += check_schema(schemas.IngestSchema(max_events), batch, "batch", components)
    events = batch["properties"]["events"]
    missing += [f"batch.events {k}={v}" for k, v in (("minItems", 1), ("maxItems", max_events)) if events.get(k) != v]
    for schema_cls, paths in QUERY_SCHEMAS.items():
        for path in paths:
            missing += check_query(schema_cls, doc["paths"][path]["get"], path)
    return missing


def test_every_limit_of_the_schemas_is_in_the_document(make_app: Callable[..., Flask]) -> None:
    public = {value for name, value in vars(schemas).items() if name.endswith("QuerySchema") and name[0] != "_"}
    assert set(QUERY_SCHEMAS) == public  # the walk covers every endpoint's query schema
    assert drift(document(make_app()), 1000) == []


@pytest.mark.parametrize("max_events", [1, 37])
def test_the_batch_cap_follows_the_app(make_app: Callable[..., Flask], max_events: int) -> None:
    small, default = make_app(max_events_per_batch=max_events), make_app()
    assert drift(document(small), max_events) == []
    assert document(default)["components"]["schemas"]["IngestBatch"]["properties"]["events"]["maxItems"] == 1000
    assert document(small)["components"]["schemas"]["IngestBatch"]["properties"]["events"]["maxItems"] == max_events


def test_the_walk_finds_a_missing_limit(make_app: Callable[..., Flask]) -> None:
    doc = document(make_app())
    del doc["components"]["schemas"]["ClickEvent"]["properties"]["button"]["maximum"]
    doc["components"]["schemas"]["MoveEvent"]["properties"]["points"]["items"]["properties"]["x"]["minimum"] = 0
    heatmap_type = next(p for p in doc["paths"][f"{PROJECT}/heatmap"]["get"]["parameters"] if p["name"] == "type")
    del heatmap_type["schema"]["enum"]
    assert drift(doc, 1000) == [
        "click.button maximum=32",
        "move.points[].x minimum=-10000000",
        f"{PROJECT}/heatmap?type enum={list(schemas.HEATMAP_TYPES)!r}",
    ]


def test_the_sessions_slice_parameters_are_documented_as_the_heatmaps(make_app: Callable[..., Flask]) -> None:
    doc = document(make_app())

    def params(path: str) -> dict[str, Json]:
        return {p["name"]: p for p in doc["paths"][path]["get"]["parameters"]}

    sessions, heatmap = params(f"{PROJECT}/sessions"), params(f"{PROJECT}/heatmap")
    for name in ("viewportBucket", "viewportWidth"):  # the same validation as the map's band
        assert sessions[name]["schema"] == heatmap[name]["schema"]
        assert "width band" in sessions[name]["description"] and "from..to" in sessions[name]["description"]
    assert "from..to" in sessions["visitedPath"]["description"]
    assert "first path" in sessions["path"]["description"]
