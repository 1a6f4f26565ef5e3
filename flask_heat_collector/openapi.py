"""The OpenAPI 3.1 document of the HTTP surface, served at ``/api/openapi.json``.

The request body and the query parameters are generated from the marshmallow schemas of
:mod:`.schemas` by apispec's MarshmallowPlugin, so each limit is written once; the paths, the
responses and the bodies of the answers are written here.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from . import __version__
from .compare import ALPHA as COMPARE_ALPHA
from .compare import REPORTS as COMPARE_REPORTS
from .schemas import (
    EVENT_SCHEMAS,
    EVENT_TYPES,
    MAX_ID,
    MAX_OBJECT_BYTES,
    MAX_OBJECT_DEPTH,
    MAX_QUERY_TIME,
    CompareQuerySchema,
    ElementsQuerySchema,
    EventField,
    EventsQuerySchema,
    HeatmapQuerySchema,
    IngestSchema,
    JsonObject,
    Number,
    PageGroupPreviewQuerySchema,
    PathsQuerySchema,
    ScrollmapQuerySchema,
    SessionDetailQuerySchema,
    SessionsQuerySchema,
)
from .signals import SIGNAL_NAMES

Json = dict[str, Any]


def _event_name(kind: str) -> str:
    return f"{kind.capitalize()}Event"


def _custom_fields(_converter: Any, field: fields.Field[Any], **_kwargs: Any) -> Json:
    """What the custom fields of :mod:`.schemas` enforce, which apispec cannot see."""
    if isinstance(field, Number):
        return {"type": "number", "minimum": field.min_value, "maximum": field.max_value}
    if isinstance(field, JsonObject):
        return {
            "type": "object",
            "description": f"At most {MAX_OBJECT_DEPTH} levels deep and {MAX_OBJECT_BYTES} bytes as UTF-8 JSON",
            "x-maxDepth": MAX_OBJECT_DEPTH,
            "x-maxBytes": MAX_OBJECT_BYTES,
        }
    if isinstance(field, EventField):  # the schema of the event's ``type`` validates it
        refs = {kind: f"#/components/schemas/{_event_name(kind)}" for kind in EVENT_TYPES}
        return {
            "oneOf": [{"$ref": ref} for ref in refs.values()],
            "discriminator": {"propertyName": "type", "mapping": refs},
        }
    return {}


def _batch_rules(_converter: Any, field: fields.Field[Any], **_kwargs: Any) -> Json:
    """The rules the batch schema applies in code: the size of ``events``, the ``type`` of each event."""
    parent = field.parent
    if isinstance(parent, IngestSchema) and field.name == "events":
        return {"minItems": 1, "maxItems": parent.max_events}
    kind = next((kind for kind, schema in EVENT_SCHEMAS.items() if schema is parent), None)
    return {"const": kind} if kind is not None and field.name == "type" else {}


def _inline(_schema: Any) -> Any:
    """No name: a nested schema is written in place, in the event or batch holding it."""
    return None


_STRING: Json = {"type": "string"}
_INT: Json = {"type": "integer"}
_DIGITS: Json = {"type": "string", "pattern": r"^\d+$"}
_STRING_OR_NULL: Json = {"type": ["string", "null"]}
_INT_OR_NULL: Json = {"type": ["integer", "null"]}
_COUNT: Json = {"type": "integer", "minimum": 0}
_POSITIVE: Json = {"type": "integer", "minimum": 1}
_PCT: Json = {"type": "number", "minimum": 0, "maximum": 100}
_VIEWPORT_COUNTS: Json = {"type": "object", "additionalProperties": _INT}
_SAMPLE: Json = {
    "type": "object",
    "required": ["sessions", "events", "small"],
    "properties": {
        "sessions": _COUNT,
        "events": _COUNT,
        "small": {"type": "boolean", "description": "sessions < HEAT_MIN_SAMPLE_SESSIONS"},
    },
    "description": "how much data the answer rests on: the distinct sessions with an event on the path in the "
    "range and width band, and the rows behind the answer",
}
_EXCLUDED: Json = {
    "type": "object",
    "required": ["sessions", "events"],
    "properties": {"sessions": _INT, "events": _INT},
    "description": "what the other traffic classes add to the same query (the default traffic=human: the "
    "bots' sample), docs/traffic.md",
}
_FOUND: Json = {"type": "boolean", "description": "whether the project exists (an unknown one answers empty)"}
_GROUP: Json = {
    "type": "object",
    "required": ["template", "paths"],
    "properties": {"template": {"type": "string"}, "paths": {"type": "integer", "minimum": 0}},
    "description": "with group=: the template and how many paths of the range it matched (the answer covers them)",
}
_GROUP_TOTAL: Json = {
    "type": "object",
    "required": ["paths", "events", "sessions", "lastSeenAt"],
    "properties": {
        "paths": {"type": "integer", "minimum": 0},
        "events": {"type": "integer", "minimum": 0},
        "sessions": {"type": "integer", "minimum": 0, "description": "distinct, unioned across the paths"},
        "lastSeenAt": {"type": ["integer", "null"]},
    },
}


def _object(required: str, **properties: Json) -> Json:
    """An object with the space-separated ``required`` keys."""
    result: Json = {"type": "object", "required": required.split()}
    return {**result, "properties": properties} if properties else result


def _each(schema: Json, names: str) -> Json:
    """The space-separated ``names``, each described by ``schema``."""
    return dict.fromkeys(names.split(), schema)


def _array(items: Json, **limits: int) -> Json:
    return {"type": "array", "items": items, **limits}


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


_NUMBER: Json = {"type": "number"}
_VERDICT: Json = {
    "z": {"type": ["number", "null"], "description": "the test statistic (null: undefined, e.g. no variance)"},
    "pValue": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": "two-sided"},
    "significant": {"type": "boolean", "description": f"pValue < {COMPARE_ALPHA}"},
}
_CELL_DIFF = _object(
    "cx cy a b diff z pValue significant",
    cx=_COUNT,
    cy=_COUNT,
    a=_object("value perSession", value=_COUNT, perSession=_NUMBER),
    b=_object("value perSession", value=_COUNT, perSession=_NUMBER),
    diff={**_NUMBER, "description": "rows per session, b - a"},
    **_VERDICT,
)
_ELEMENT_SIDE = _object(
    "clicks sessions clicksPerSession share",
    clicks=_COUNT,
    sessions=_COUNT,
    clicksPerSession=_NUMBER,
    share={**_NUMBER, "description": "sessions that clicked it / the side's sessions"},
)
_ELEMENT_DIFF = _object(
    "selector a b diff z pValue significant",
    selector=_STRING,
    a=_ELEMENT_SIDE,
    b=_ELEMENT_SIDE,
    diff=_object("clicksPerSession share", clicksPerSession=_NUMBER, share=_NUMBER),
    **_VERDICT,
)
_DEPTH_DIFF = _object(
    "depth a b diff z pValue significant",
    depth={"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 5},
    a=_object("sessions share", sessions=_COUNT, share=_NUMBER),
    b=_object("sessions share", sessions=_COUNT, share=_NUMBER),
    diff={**_NUMBER, "description": "share of sessions that reached the depth, b - a"},
    **_VERDICT,
)
_COMPARE_SIDE = _object(
    "slice sessions report",
    slice={
        **_object(
            "from to path group viewportBucket viewportWidth segment",
            **{"from": _INT, "to": _INT},
            **_each(_STRING_OR_NULL, "path group viewportBucket segment"),
            viewportWidth=_INT_OR_NULL,
        ),
        "description": "the side as resolved: its own items, else the shared parameters",
    },
    sessions={**_COUNT, "description": "the report's meta.sample.sessions: what per-session numbers divide by"},
    segmentSessions={**_COUNT, "description": "with a segment: the sessions it tags in the side's range"},
    report={
        "anyOf": [_ref("Heatmap"), _ref("Elements"), _ref("Scrollmap")],
        "description": "the side's report as its endpoint answers it (elements: at most limit)",
    },
)


# The bodies of the answers: no marshmallow schema produces them.
_ANSWERS: dict[str, Json] = {
    "Error": _object("error code message requestId", **_each(_STRING, "error code message requestId"), details={}),
    "IngestResult": _object(
        "ok requestId projectId sessionId accepted duplicates dropped",
        ok={"const": True},
        **_each(_STRING, "requestId projectId sessionId"),
        **_each(_INT, "accepted duplicates dropped"),
    ),
    "Event": _object(
        "id eventId projectId sessionId userId type ts path selector x y scrollDepth metaJson data",
        **_each(_STRING, "id eventId projectId sessionId path metaJson"),
        **_each(_STRING_OR_NULL, "userId selector"),
        **_each(_INT_OR_NULL, "x y scrollDepth"),
        type={"enum": list(EVENT_TYPES)},
        ts=_INT,
        data={"type": ["object", "null"]},
    ),
    "Session": _object(
        "id projectId userId startedAt lastSeenAt firstPath userAgent deviceJson ipHash",
        **_each(_STRING, "id projectId firstPath"),
        **_each(_STRING_OR_NULL, "userId userAgent deviceJson ipHash"),
        traffic={"enum": ["human", "bot"], "description": "the session's traffic class (docs/traffic.md)"},
        trafficReason={**_STRING_OR_NULL, "description": "why a bot is one: user_agent:<match>, headless, a rule"},
        **_each(_INT, "startedAt lastSeenAt"),
        externalUserId={**_STRING_OR_NULL, "description": "the user id the SDK or JWT gave"},
    ),
    "Heatmap": _object(
        "points meta",
        points=_array(_object("x y value", x=_INT, y=_INT, value=_INT)),
        meta=_object(
            excluded=_EXCLUDED,
            required="resolution viewport renderHeight cell total plotted ignored otherViewports requestedType "
            "resolvedType bucket plottableTypes typeBreakdown anchor sample projectFound",
            sample=_SAMPLE,
            projectFound=_FOUND,
            group=_GROUP,
            cell=_object("w h", w={"type": "number"}, h={"type": "number"}),
            otherViewports=_VIEWPORT_COUNTS,
            viewport=_object(
                "w h",
                w={**_INT, "description": "the frame: the most common exact viewport width of the bucket's rows"},
                h={**_INT, "description": "the chosen bucket's height"},
            ),
            anchor={"enum": ["left", "center", "scale"], "description": "the anchor asked for"},
        ),
    ),
    "EventPage": _object(
        "events meta",
        events=_array(_ref("Event")),
        meta=_object(
            excluded=_EXCLUDED,
            required="count limit offset projectId requestedType projectFound",
            projectFound=_FOUND,
            group=_GROUP,
        ),
    ),
    "Scrollmap": _object(
        "reach meta",
        reach=_array(
            _object(
                "depth sessions pct",
                depth={"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 5},
                sessions=_COUNT,
                pct=_PCT,
            ),
            minItems=21,
            maxItems=21,
        ),
        meta=_object(
            excluded=_EXCLUDED,
            required="sessions foldPct viewport renderHeight bucket otherViewports sample projectFound",
            sample=_SAMPLE,
            projectFound=_FOUND,
            sessions=_COUNT,
            foldPct=_PCT,
            otherViewports=_VIEWPORT_COUNTS,
            group=_GROUP,
        ),
    ),
    "Elements": _object(
        "elements meta",
        elements=_array(
            _object(
                "selector clicks sessions rageClicks deadClicks errorClicks",
                selector=_STRING,
                clicks=_POSITIVE,
                sessions=_POSITIVE,
                rageClicks=_COUNT,
                deadClicks=_COUNT,
                errorClicks=_COUNT,
            ),
            maxItems=500,
        ),
        meta=_object(
            excluded=_EXCLUDED,
            required="count total limit requestedType viewport bucket viewports otherViewports sample projectFound",
            otherViewports=_VIEWPORT_COUNTS,
            sample=_SAMPLE,
            projectFound=_FOUND,
            group=_GROUP,
        ),
    ),
    "Projects": _object(
        "projects",
        projects=_array(
            _object(
                "id name createdAt lastEventAt",
                **_each(_STRING, "id name"),
                createdAt=_INT,
                lastEventAt={**_INT_OR_NULL, "description": "the latest event ts (a move: its latest point)"},
            )
        ),
    ),
    "Paths": _object(
        "paths meta",
        paths=_array(
            _object(
                "path events sessions lastSeenAt rageClicks deadClicks quickBacks excessiveScrolls",
                path=_STRING,
                events=_POSITIVE,
                sessions=_POSITIVE,
                lastSeenAt=_INT,
                **_each(_COUNT, "rageClicks deadClicks quickBacks excessiveScrolls"),
            ),
            maxItems=500,
        ),
        meta=_object(
            excluded=_EXCLUDED,
            required="count total limit q sample projectFound",
            sample=_SAMPLE,
            projectFound=_FOUND,
            group=_GROUP,
        ),
        groups={
            **_array(
                _object("template paths events sessions lastSeenAt", template=_STRING, **_GROUP_TOTAL["properties"])
            ),
            "description": "with groups=1: the groups of HEAT_PAGE_GROUPS in their order, over the range",
        },
    ),
    "PageGroupPreview": _object(
        "template paths total meta",
        template=_STRING,
        paths=_array(
            _object(
                "path events sessions lastSeenAt", path=_STRING, events=_POSITIVE, sessions=_POSITIVE, lastSeenAt=_INT
            ),
            maxItems=500,
        ),
        total=_GROUP_TOTAL,
        meta=_object(
            excluded=_EXCLUDED,
            required="count total limit sample configured projectFound",
            sample=_SAMPLE,
            projectFound=_FOUND,
            configured={"type": "boolean", "description": "whether HEAT_PAGE_GROUPS lists the template"},
        ),
    ),
    "Compare": _object(
        "report status minSessions a b meta",
        report={"enum": list(COMPARE_REPORTS)},
        status={
            "enum": ["ok", "insufficient_data"],
            "description": "insufficient_data: a side has fewer sessions than HEAT_MIN_SAMPLE_SESSIONS "
            "(then no differences)",
        },
        minSessions=_COUNT,
        a=_COMPARE_SIDE,
        b=_COMPARE_SIDE,
        test={
            **_object("name alpha sided direction", name=_STRING, alpha={"type": "number"}, sided={"const": "two"}),
            "description": "with status ok: the test of every difference, its two-sided level and direction (b - a)",
        },
        total={**_COUNT, "description": "with status ok: how many cells, elements or depths differ or not"},
        differences={
            **_array({"anyOf": [_CELL_DIFF, _ELEMENT_DIFF, _DEPTH_DIFF]}),
            "description": "with status ok: heatmap cells by row then column; elements most clicked (a + b) "
            "first, at most limit; the 21 depths",
        },
        meta=_object(excluded=_EXCLUDED, required="projectId projectFound", projectId=_STRING, projectFound=_FOUND),
    ),
    "SessionPage": _object(
        "sessions meta",
        sessions=_array(
            _object(
                "sessionId userId startedAt lastSeenAt firstPath eventCount signals",
                userId=_STRING_OR_NULL,
                externalUserId=_STRING_OR_NULL,
                signals=_object(" ".join(SIGNAL_NAMES), **_each(_COUNT, " ".join(SIGNAL_NAMES))),
            )
        ),
        meta=_object(excluded=_EXCLUDED, required="count limit offset projectId projectFound", projectFound=_FOUND),
    ),
    "SessionDetail": _object(
        "session events meta",
        session={"oneOf": [_ref("Session"), {"type": "null"}]},
        events=_array(_ref("Event")),
        meta=_object(
            excluded=_EXCLUDED,
            required="found count limit offset",
            projectFound={**_FOUND, "description": "whether the project exists (only under /api/projects/...)"},
        ),
    ),
    "Metrics": _object(
        "metrics requestId now",
        metrics=_object("ingestCount ingestErrorCount rejectedEventCount lastIngestMs"),
        requestId=_STRING,
        now=_INT,
    ),
}
_SECURITY: Json = {
    "projectKey": {"type": "apiKey", "in": "header", "name": "x-project-key"},
    "queryKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "queryBearer": {"type": "http", "scheme": "bearer"},
}
_QUERY_SECURITY: list[Json] = [{"queryKey": []}, {"queryBearer": []}]
_COMMON_HEADERS: Json = {
    "X-Request-Id": {"schema": _STRING},
    "X-Heat-Collector": {"schema": {"type": "string", "enum": ["heat-collector"]}},
    "X-Content-Type-Options": {"schema": {"type": "string", "enum": ["nosniff"]}},
}
_NO_STORE: Json = {"Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}}}
_RATE_HEADERS: Json = {f"X-RateLimit-{name}": {"schema": _DIGITS} for name in ("Limit", "Remaining", "Reset")}


def _error(description: str, *, retry: bool = False) -> Json:
    headers = dict(_COMMON_HEADERS)
    if retry:
        headers["Retry-After"] = {"required": True, "schema": _DIGITS}
    return {"description": description, "headers": headers, "content": {"application/json": {"schema": _ref("Error")}}}


def _ok(description: str, schema: Json, headers: Json) -> Json:
    return {"description": description, "headers": headers, "content": {"application/json": {"schema": schema}}}


def _answer(name: str, description: str, **headers: Json) -> Json:
    """The 200 answer of a query endpoint: the ``name`` schema, never cached."""
    return _ok(description, _ref(name), {**_COMMON_HEADERS, **_NO_STORE, **headers})


def _admin(description: str) -> Json:
    """The 200 answer of an admin endpoint: a JSON object."""
    return _ok(description, {"type": "object"}, _COMMON_HEADERS)


_UNEXPECTED = _error("Unexpected failure (no internals disclosed)")


def _errors(invalid: str, unauthorized: str, forbidden: str) -> Json:
    """The errors of an endpoint that reads the database."""
    return {
        "400": _error(invalid),
        "401": _error(unauthorized),
        "403": _error(forbidden),
        "500": _UNEXPECTED,
        "503": _error("Database unavailable", retry=True),
    }


_QUERY_ERRORS = _errors(
    "Invalid query parameters",
    "Missing or invalid query API key",
    "The query key is scoped to other projects (forbidden_project)",
)
_ADMIN_ERRORS = _errors(
    "Invalid id or header",
    "Missing or invalid admin key (query keys are not admin keys)",
    "The admin key is scoped to other projects",
)
_TOTALS_ERRORS: Json = {
    "400": _error("A header with a NUL or other unstorable character"),
    "401": _error("Missing or invalid query key"),
    "403": _error("A project-scoped key: the totals cover every project (forbidden_project)"),
}


def _param(name: str, schema: Json, where: str = "query", **extra: Any) -> Json:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, **extra}


_ID: Json = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
_PROJECT = _param("projectId", _ID, "path")
_SESSION = _param("sessionId", _ID, "path")
_USER = _param("userId", _ID, "path")
# `from` and `to` are read by the views (views/query.py parse_time), not by a schema.
_TIME: Json = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": -MAX_QUERY_TIME, "exclusiveMaximum": MAX_QUERY_TIME},
        {"type": "string", "format": "date-time"},
        {"const": "", "description": "not set"},
    ]
}
_TIMES = [
    _param(name, _TIME, description="Unix milliseconds, or an ISO 8601 or RFC 2822 date (UTC when no zone is given)")
    for name in ("from", "to")
]
_DRY_RUN = _param("dryRun", {"type": "string", "enum": ["true", "false", "1", "0"]})


def _query(schema: type[Any]) -> Json:
    """The fields of a marshmallow schema, which the plugin expands into query parameters."""
    return {"in": "query", "schema": schema}


def _get(summary: str, parameters: list[Json], answer: Json, **errors: Json) -> Json:
    """A query endpoint: the query key's security, its parameters, its answer and errors."""
    responses = {"200": answer, **_QUERY_ERRORS, **errors}
    return {"get": {"summary": summary, "security": _QUERY_SECURITY, "parameters": parameters, "responses": responses}}


def _report(summary: str, schema: type[Any], name: str, description: str) -> Json:
    """A report of one project over a time range."""
    return _get(summary, [_PROJECT, *_TIMES, _query(schema)], _answer(name, description))


def _detail(*path: Json, **errors: Json) -> Json:
    """A session and its events, by project and id or by id alone."""
    found = {"X-Session-Found": {"schema": {"enum": ["0", "1"]}}}
    answer = _answer("SessionDetail", "The session (null when not found)", **found)
    return _get("One session and its events", [*path, _query(SessionDetailQuerySchema)], answer, **errors)


def _paths() -> dict[str, Json]:
    """The operations by path (relative to ``HEAT_URL_PREFIX``), made per call: apispec expands them in place."""
    project = "/api/projects/{projectId}"
    return {
        "/ingest": {
            "post": {
                "summary": "Store one batch from the heat-tracker SDK",
                "security": [{"projectKey": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("IngestBatch")}}},
                "responses": {
                    "200": _answer(
                        "IngestResult",
                        "Stored (retries store nothing twice)",
                        **{"X-Ingested-Events": {"schema": _STRING}},
                        **_RATE_HEADERS,
                    ),
                    "400": _error("Invalid JSON, gzip, payload or hook payload"),
                    "401": _error("Missing project key or JWT, or invalid JWT"),
                    "403": _error("Unknown, impossible or retired project key"),
                    "413": _error("Body larger than HEAT_MAX_BODY_BYTES (gzip: once inflated), or gzip over 100:1"),
                    "415": _error("Not a JSON body, or a Content-Encoding other than gzip"),
                    "429": _error("Rate limited, or too many new projects from this IP", retry=True),
                    "500": _UNEXPECTED,
                    "503": _error("Database or JWKS unavailable; retry", retry=True),
                },
            },
        },
        "/api/projects": _get(
            "The projects the query key may read, oldest first (createdAt, then id)",
            [],
            _answer("Projects", "Projects", **{"X-Total-Count": {"schema": _DIGITS}}),
        ),
        f"{project}/heatmap": _report(
            "Heatmap points aggregated by the database", HeatmapQuerySchema, "Heatmap", "Points and meta"
        ),
        f"{project}/scrollmap": _report(
            "Share of the sessions that scrolled reaching each 5 % depth, and the fold",
            ScrollmapQuerySchema,
            "Scrollmap",
            "Reach and meta",
        ),
        f"{project}/elements": _report(
            "Clicked selectors, most clicked (or most rage-clicked) first",
            ElementsQuerySchema,
            "Elements",
            "Ranked elements",
        ),
        f"{project}/paths": _report(
            "Paths with events in the range, most events first", PathsQuerySchema, "Paths", "Ranked paths"
        ),
        f"{project}/page-groups/preview": _report(
            "The paths with events in the range that a page group's template covers, and the group's total",
            PageGroupPreviewQuerySchema,
            "PageGroupPreview",
            "Covered paths, most events first, and their total",
        ),
        f"{project}/compare": _get(
            "Two slices of one report: both sides, per-session differences and a test of each (docs/compare.md)",
            [_PROJECT, *_TIMES, _query(CompareQuerySchema)],
            _answer(
                "Compare",
                "Both sides, and their differences or insufficient_data",
                **{"X-Compare-Status": {"schema": {"enum": ["ok", "insufficient_data"]}}},
            ),
        ),
        f"{project}/events": _report("Events ordered by ts", EventsQuerySchema, "EventPage", "A page of events"),
        f"{project}/sessions": _report(
            "Sessions ordered by start, with event counts", SessionsQuerySchema, "SessionPage", "A page of sessions"
        ),
        f"{project}/sessions/{{sessionId}}": _detail(_PROJECT, _SESSION),
        "/api/sessions/{sessionId}": _detail(
            _SESSION, **{"409": _error("The session id exists in several projects (details.projects lists them)")}
        ),
        "/api/metrics": {
            "get": {
                "summary": "Ingest counters",
                "security": _QUERY_SECURITY,
                "responses": {"200": _answer("Metrics", "Counters"), **_TOTALS_ERRORS},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over the host's workers (HEAT_PROMETHEUS_ENABLED)",
                "description": "Public with HEAT_PROMETHEUS_PUBLIC; OpenMetrics when Accept asks for it.",
                "security": _QUERY_SECURITY,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "headers": {**_COMMON_HEADERS, **_NO_STORE},
                        "content": {
                            "text/plain": {"schema": _STRING},
                            "application/openmetrics-text": {"schema": _STRING},
                        },
                    },
                    **_TOTALS_ERRORS,
                },
            }
        },
        f"{project}/users/{{userId}}": {
            "delete": {
                "summary": "Erase a user's data (admin key): every answer afterwards as if never stored",
                "security": _QUERY_SECURITY,
                "description": "An admin key from HEAT_ADMIN_API_KEYS (query keys are refused). "
                "userId is the SDK's/JWT's user id or the internal id.",
                "parameters": [_PROJECT, _USER, _DRY_RUN],
                "responses": {
                    "200": _admin(
                        "{erased: {users, sessions, events}, verified} or, with dryRun, {found: {...}, dryRun: true}"
                    ),
                    **_ADMIN_ERRORS,
                },
            }
        },
        f"{project}/users/{{userId}}/export": {
            "get": {
                "summary": "Export a user's data (admin key): {user, users, sessions, events}, streamed",
                "security": _QUERY_SECURITY,
                "parameters": [_PROJECT, _USER],
                "responses": {
                    "200": _admin("The user, their sessions and events (rows as the events API answers)"),
                    **_ADMIN_ERRORS,
                },
            }
        },
        "/api/purge": {
            "post": {
                "summary": "Apply HEAT_RETENTION_DAYS / HEAT_AGGREGATE_RETENTION_DAYS (an unscoped admin key)",
                "security": _QUERY_SECURITY,
                "parameters": [_DRY_RUN],
                "responses": {
                    "200": _admin(
                        "{purged|found: {events, sessions, users, aggregates}, dryRun, rawBefore, aggregatesBefore}"
                    ),
                    "409": _error("No retention is configured"),
                    **_ADMIN_ERRORS,
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def build_openapi(ingest_schema: IngestSchema) -> Json:
    """The document of an app whose batches ``ingest_schema`` validates (its ``events`` cap included)."""
    plugin = MarshmallowPlugin(schema_name_resolver=_inline)
    spec = APISpec("flask-heat-collector", __version__, "3.1.0", plugins=[plugin])
    converter: Any = plugin.converter  # set by APISpec; apispec leaves add_attribute_function untyped
    converter.add_attribute_function(_custom_fields)
    converter.add_attribute_function(_batch_rules)
    for name, scheme in _SECURITY.items():
        spec.components.security_scheme(name, scheme)
    for kind, schema in EVENT_SCHEMAS.items():
        spec.components.schema(_event_name(kind), schema=schema)
    spec.components.schema("IngestBatch", schema=ingest_schema)
    for name, answer in _ANSWERS.items():
        spec.components.schema(name, answer)
    for path, operations in _paths().items():
        spec.path(path, operations=operations)
    document: Json = spec.to_dict()
    return document
