"""The OpenAPI 3 document of the whole HTTP surface, served at ``/api/openapi.json``."""

from __future__ import annotations

from functools import cache
from typing import Any

from . import __version__
from .schemas import EVENT_TYPES, HEATMAP_TYPES, MAX_ID, MAX_PATH, MAX_POINTS, MAX_TS, MAX_VIEWPORT_WIDTH, QUERY_TYPES

Json = dict[str, Any]

_STR_HEADER: Json = {"schema": {"type": "string"}}
_COMMON_HEADERS: Json = {
    "X-Request-Id": _STR_HEADER,
    "X-Heat-Collector": {"schema": {"type": "string", "enum": ["heat-collector"]}},
    "X-Content-Type-Options": {"schema": {"type": "string", "enum": ["nosniff"]}},
}
_RATE_HEADERS: Json = {
    "X-RateLimit-Limit": {"schema": {"type": "string", "pattern": r"^\d+$"}},
    "X-RateLimit-Remaining": {"schema": {"type": "string", "pattern": r"^\d+$"}},
    "X-RateLimit-Reset": {"schema": {"type": "string", "pattern": r"^\d+$"}},
}


def _error(description: str, *, retry: bool = False) -> Json:
    headers = dict(_COMMON_HEADERS)
    if retry:
        headers["Retry-After"] = {"required": True, "schema": {"type": "string", "pattern": r"^\d+$"}}
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _ok(schema_ref: str, description: str, **headers: Json) -> Json:
    return {
        "description": description,
        "headers": {
            **_COMMON_HEADERS,
            "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
            **headers,
        },
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _query_errors() -> Json:
    return {
        "400": _error("Invalid query parameters"),
        "401": _error("Missing or invalid query API key"),
        "403": _error("The query key is scoped to other projects (forbidden_project)"),
        "500": _error("Unexpected failure (no internals disclosed)"),
        "503": _error("Database unavailable", retry=True),
    }


def _admin_ok(description: str) -> Json:
    """The 200 answer of an admin endpoint: a JSON object."""
    return {
        "description": description,
        "headers": _COMMON_HEADERS,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }


def _admin_errors() -> Json:
    return {
        "400": _error("Invalid id or header"),
        "401": _error("Missing or invalid admin key (query keys are not admin keys)"),
        "403": _error("The admin key is scoped to other projects"),
        "500": _error("Unexpected failure (no internals disclosed)"),
        "503": _error("Database unavailable", retry=True),
    }


def _param(name: str, schema: Json, where: str = "query", required: bool = False) -> Json:
    return {"name": name, "in": where, "required": required, "schema": schema}


_STR_ID: Json = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
_TIME: Json = {
    "type": "integer",
    "minimum": 0,
    "maximum": MAX_TS,
    "description": "Unix milliseconds; an ISO 8601 or RFC 2822 date string is accepted too",
}
_PAGE = [
    _param("offset", {"type": "integer", "minimum": 0, "maximum": 10_000_000}),
]


def _limit(default: int, maximum: int) -> Json:
    return _param("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default})


def _nullable(kind: str) -> Json:
    return {"type": [kind, "null"]}


def _event_schemas() -> Json:
    number: Json = {"type": "number"}
    base_props: Json = {
        "eventId": _STR_ID,
        "sessionId": _STR_ID,
        "ts": {"type": "number", "minimum": 0},
        "path": {"type": "string", "maxLength": MAX_PATH},
        "viewport": {
            "type": "object",
            "required": ["w", "h"],
            "properties": {
                "w": {"type": "number", "minimum": 0, "maximum": 100_000},
                "h": {"type": "number", "minimum": 0, "maximum": 100_000},
                "dpr": {"type": "number", "minimum": 0, "maximum": 100},
            },
        },
        "device": {
            "type": "object",
            "properties": {
                "ua": {"type": "string", "maxLength": 1024},
                "platform": {"type": "string", "maxLength": 128},
                "language": {"type": "string", "maxLength": 64},
            },
        },
        "meta": {"type": "object"},
    }
    specific: dict[str, tuple[list[str], Json]] = {
        "click": (["x", "y"], {"x": number, "y": number, "selector": {"type": "string"}, "button": number}),
        "move": (
            ["points"],
            {
                "points": {
                    "type": "array",
                    "maxItems": MAX_POINTS,
                    "items": {
                        "type": "object",
                        "required": ["x", "y", "tsOffset"],
                        "properties": {"x": number, "y": number, "tsOffset": number},
                    },
                }
            },
        ),
        "scroll": (
            ["scrollY", "scrollDepthPct"],
            {"scrollY": number, "scrollDepthPct": {"type": "number", "minimum": 0, "maximum": 10_000}},
        ),
        "pageview": (["to"], {"to": {"type": "string"}, "from": {"type": "string"}}),
        "custom": (
            ["name"],
            {"name": {"type": "string", "minLength": 1, "maxLength": 256}, "props": {"type": "object"}},
        ),
        "input": (
            ["action"],
            {
                "action": {"enum": ["focus", "blur", "change"]},
                "selector": {"type": "string"},
                "inputType": {"type": "string"},
                "length": number,
                "masked": {"type": "string"},
            },
        ),
        "keyboard": (["category"], {"category": {"enum": ["navigation", "editing", "modifier", "system", "other"]}}),
    }
    result: Json = {}
    for kind in EVENT_TYPES:
        required, props = specific[kind]
        result[f"{kind.capitalize()}Event"] = {
            "type": "object",
            "required": ["eventId", "sessionId", "ts", "path", "viewport", "device", "type", *required],
            "properties": {**base_props, "type": {"const": kind}, **props},
        }
    return result


def _components() -> Json:
    event_refs = [{"$ref": f"#/components/schemas/{k.capitalize()}Event"} for k in EVENT_TYPES]
    string_or_null = _nullable("string")
    int_or_null = _nullable("integer")
    return {
        "securitySchemes": {
            "projectKey": {"type": "apiKey", "in": "header", "name": "x-project-key"},
            "queryKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            "queryBearer": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "code", "message", "requestId"],
                "properties": {
                    "error": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "requestId": {"type": "string"},
                    "details": {},
                },
            },
            **_event_schemas(),
            "IngestBatch": {
                "type": "object",
                "required": ["session", "events"],
                "properties": {
                    "sdk": {"type": "object"},
                    "app": {"type": "object"},
                    "session": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {
                            "id": _STR_ID,
                            "startedAt": {"type": "number", "minimum": 0},
                            "lastSeenAt": {"type": "number", "minimum": 0},
                        },
                    },
                    "user": {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": _STR_ID, "traits": {"type": "object"}},
                    },
                    "events": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {"oneOf": event_refs}},
                },
            },
            "IngestResult": {
                "type": "object",
                "required": ["ok", "requestId", "projectId", "sessionId", "accepted", "duplicates", "dropped"],
                "properties": {
                    "ok": {"const": True},
                    "requestId": {"type": "string"},
                    "projectId": {"type": "string"},
                    "sessionId": {"type": "string"},
                    "accepted": {"type": "integer"},
                    "duplicates": {"type": "integer"},
                    "dropped": {"type": "integer"},
                },
            },
            "Event": {
                "type": "object",
                "required": [
                    "id",
                    "eventId",
                    "projectId",
                    "sessionId",
                    "userId",
                    "type",
                    "ts",
                    "path",
                    "selector",
                    "x",
                    "y",
                    "scrollDepth",
                    "metaJson",
                    "data",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "eventId": {"type": "string"},
                    "projectId": {"type": "string"},
                    "sessionId": {"type": "string"},
                    "userId": string_or_null,
                    "type": {"enum": list(EVENT_TYPES)},
                    "ts": {"type": "integer"},
                    "path": {"type": "string"},
                    "selector": string_or_null,
                    "x": int_or_null,
                    "y": int_or_null,
                    "scrollDepth": int_or_null,
                    "metaJson": {"type": "string"},
                    "data": {"type": ["object", "null"]},
                },
            },
            "Session": {
                "type": "object",
                "required": [
                    "id",
                    "projectId",
                    "userId",
                    "startedAt",
                    "lastSeenAt",
                    "firstPath",
                    "userAgent",
                    "deviceJson",
                    "ipHash",
                ],
                "properties": {
                    "id": {"type": "string"},
                    "projectId": {"type": "string"},
                    "userId": string_or_null,
                    "externalUserId": {**string_or_null, "description": "the user id the SDK or JWT gave"},
                    "startedAt": {"type": "integer"},
                    "lastSeenAt": {"type": "integer"},
                    "firstPath": {"type": "string"},
                    "userAgent": string_or_null,
                    "deviceJson": string_or_null,
                    "ipHash": string_or_null,
                },
            },
            "Heatmap": {
                "type": "object",
                "required": ["points", "meta"],
                "properties": {
                    "points": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["x", "y", "value"],
                            "properties": {
                                "x": {"type": "integer"},
                                "y": {"type": "integer"},
                                "value": {"type": "integer"},
                            },
                        },
                    },
                    "meta": {
                        "type": "object",
                        "required": [
                            "resolution",
                            "viewport",
                            "renderHeight",
                            "cell",
                            "total",
                            "plotted",
                            "ignored",
                            "otherViewports",
                            "requestedType",
                            "resolvedType",
                            "bucket",
                            "plottableTypes",
                            "typeBreakdown",
                        ],
                        "properties": {
                            "cell": {
                                "type": "object",
                                "required": ["w", "h"],
                                "properties": {"w": {"type": "number"}, "h": {"type": "number"}},
                            },
                            "otherViewports": {"type": "object", "additionalProperties": {"type": "integer"}},
                        },
                    },
                },
            },
            "EventPage": {
                "type": "object",
                "required": ["events", "meta"],
                "properties": {
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                    "meta": {"type": "object", "required": ["count", "limit", "offset", "projectId", "requestedType"]},
                },
            },
            "Scrollmap": {
                "type": "object",
                "required": ["reach", "meta"],
                "properties": {
                    "reach": {
                        "type": "array",
                        "minItems": 21,
                        "maxItems": 21,
                        "items": {
                            "type": "object",
                            "required": ["depth", "sessions", "pct"],
                            "properties": {
                                "depth": {"type": "integer", "minimum": 0, "maximum": 100, "multipleOf": 5},
                                "sessions": {"type": "integer", "minimum": 0},
                                "pct": {"type": "number", "minimum": 0, "maximum": 100},
                            },
                        },
                    },
                    "meta": {
                        "type": "object",
                        "required": ["sessions", "foldPct", "viewport", "renderHeight", "bucket", "otherViewports"],
                        "properties": {
                            "sessions": {"type": "integer", "minimum": 0},
                            "foldPct": {"type": "number", "minimum": 0, "maximum": 100},
                            "otherViewports": {"type": "object", "additionalProperties": {"type": "integer"}},
                        },
                    },
                },
            },
            "Elements": {
                "type": "object",
                "required": ["elements", "meta"],
                "properties": {
                    "elements": {
                        "type": "array",
                        "maxItems": 500,
                        "items": {
                            "type": "object",
                            "required": ["selector", "clicks", "sessions", "rageClicks"],
                            "properties": {
                                "selector": {"type": "string"},
                                "clicks": {"type": "integer", "minimum": 1},
                                "sessions": {"type": "integer", "minimum": 1},
                                "rageClicks": {"type": "integer", "minimum": 0},
                            },
                        },
                    },
                    "meta": {"type": "object", "required": ["count", "total", "limit", "requestedType"]},
                },
            },
            "Paths": {
                "type": "object",
                "required": ["paths", "meta"],
                "properties": {
                    "paths": {
                        "type": "array",
                        "maxItems": 500,
                        "items": {
                            "type": "object",
                            "required": ["path", "events", "sessions", "lastSeenAt"],
                            "properties": {
                                "path": {"type": "string"},
                                "events": {"type": "integer", "minimum": 1},
                                "sessions": {"type": "integer", "minimum": 1},
                                "lastSeenAt": {"type": "integer"},
                            },
                        },
                    },
                    "meta": {"type": "object", "required": ["count", "total", "limit", "q"]},
                },
            },
            "SessionPage": {
                "type": "object",
                "required": ["sessions", "meta"],
                "properties": {
                    "sessions": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["sessionId", "userId", "startedAt", "lastSeenAt", "firstPath", "eventCount"],
                            "properties": {"userId": string_or_null, "externalUserId": string_or_null},
                        },
                    },
                    "meta": {"type": "object"},
                },
            },
            "SessionDetail": {
                "type": "object",
                "required": ["session", "events", "meta"],
                "properties": {
                    "session": {"oneOf": [{"$ref": "#/components/schemas/Session"}, {"type": "null"}]},
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                    "meta": {"type": "object", "required": ["found", "count", "limit", "offset"]},
                },
            },
            "Metrics": {
                "type": "object",
                "required": ["metrics", "requestId", "now"],
                "properties": {
                    "metrics": {
                        "type": "object",
                        "required": ["ingestCount", "ingestErrorCount", "rejectedEventCount", "lastIngestMs"],
                    },
                    "requestId": {"type": "string"},
                    "now": {"type": "integer"},
                },
            },
        },
    }


@cache
def build_openapi() -> Json:
    """The document (built once; callers must not change it); paths are relative to ``HEAT_URL_PREFIX``."""
    query_security: list[Json] = [{"queryKey": []}, {"queryBearer": []}]
    project = _param("projectId", _STR_ID, "path", True)
    session = _param("sessionId", _STR_ID, "path", True)
    user = _param("userId", _STR_ID, "path", True)
    time_params = [_param("from", _TIME), _param("to", _TIME)]
    type_param = _param("type", {"enum": list(QUERY_TYPES)})
    path_param = _param("path", {"type": "string", "maxLength": MAX_PATH})
    frame_params = [
        _param("viewportBucket", {"type": "string", "pattern": r"^\d{1,6}x\d{1,6}$"}),
        _param(
            "viewportWidth",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_VIEWPORT_WIDTH,
                "description": "the frame is the most common bucket of this width",
            },
        ),
        _param("viewports", {"type": "string", "enum": ["width", "all"]}),
    ]
    detail: Json = {
        "summary": "One session and its events",
        "security": query_security,
        "parameters": [type_param, _limit(200, 500), *_PAGE],
        "responses": {
            "200": _ok(
                "SessionDetail",
                "The session (null when not found)",
                **{"X-Session-Found": {"schema": {"enum": ["0", "1"]}}},
            ),
            **_query_errors(),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "flask-heat-collector", "version": __version__},
        "components": _components(),
        "paths": {
            "/ingest": {
                "post": {
                    "summary": "Store one batch from the heat-tracker SDK",
                    "security": [{"projectKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestBatch"}}},
                    },
                    "responses": {
                        "200": _ok(
                            "IngestResult",
                            "Stored (retries store nothing twice)",
                            **{"X-Ingested-Events": {"schema": {"type": "string"}}},
                            **_RATE_HEADERS,
                        ),
                        "400": _error("Invalid JSON, gzip, payload or hook payload"),
                        "401": _error("Missing project key or JWT, or invalid JWT"),
                        "403": _error("Unknown, impossible or retired project key"),
                        "413": _error("Body larger than HEAT_MAX_BODY_BYTES (gzip: once inflated), or gzip over 100:1"),
                        "415": _error("Not a JSON body, or a Content-Encoding other than gzip"),
                        "429": _error("Rate limited, or too many new projects from this IP", retry=True),
                        "500": _error("Unexpected failure (no internals disclosed)"),
                        "503": _error("Database or JWKS unavailable; retry", retry=True),
                    },
                },
            },
            "/api/projects/{projectId}/heatmap": {
                "get": {
                    "summary": "Heatmap points aggregated by the database",
                    "security": query_security,
                    "parameters": [
                        project,
                        path_param,
                        *time_params,
                        _param("type", {"enum": list(HEATMAP_TYPES)}),
                        _param("resolution", {"type": "integer", "minimum": 8, "maximum": 1024}),
                        *frame_params,
                    ],
                    "responses": {"200": _ok("Heatmap", "Points and meta"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/scrollmap": {
                "get": {
                    "summary": "Share of the sessions that scrolled reaching each 5 % depth, and the fold",
                    "security": query_security,
                    "parameters": [project, path_param, *time_params, *frame_params],
                    "responses": {"200": _ok("Scrollmap", "Reach and meta"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/elements": {
                "get": {
                    "summary": "Clicked selectors, most clicked (or most rage-clicked) first",
                    "security": query_security,
                    "parameters": [
                        project,
                        path_param,
                        *time_params,
                        _param("type", {"type": "string", "enum": ["click", "rageclick"]}),
                        _limit(50, 500),
                    ],
                    "responses": {"200": _ok("Elements", "Ranked elements"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/paths": {
                "get": {
                    "summary": "Paths with events in the range, most events first",
                    "security": query_security,
                    "parameters": [
                        project,
                        *time_params,
                        _param("q", {"type": "string", "maxLength": MAX_PATH, "description": "path prefix"}),
                        _limit(100, 500),
                    ],
                    "responses": {"200": _ok("Paths", "Ranked paths"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/events": {
                "get": {
                    "summary": "Events ordered by ts",
                    "security": query_security,
                    "parameters": [
                        project,
                        _param("path", {"type": "string", "maxLength": MAX_PATH}),
                        *time_params,
                        type_param,
                        _limit(200, 1000),
                        *_PAGE,
                    ],
                    "responses": {"200": _ok("EventPage", "A page of events"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/sessions": {
                "get": {
                    "summary": "Sessions ordered by start, with event counts",
                    "security": query_security,
                    "parameters": [
                        project,
                        *time_params,
                        _param(
                            "userId",
                            {
                                "type": "string",
                                "maxLength": MAX_ID,
                                "description": "the SDK's or JWT's user id, or the internal one",
                            },
                        ),
                        _param("path", {"type": "string", "maxLength": MAX_PATH}),
                        _param("order", {"type": "string", "enum": ["asc", "desc"]}),
                        _limit(50, 200),
                        *_PAGE,
                    ],
                    "responses": {"200": _ok("SessionPage", "A page of sessions"), **_query_errors()},
                }
            },
            "/api/projects/{projectId}/sessions/{sessionId}": {
                "get": {**detail, "parameters": [project, session, *detail["parameters"]]}
            },
            "/api/sessions/{sessionId}": {
                "get": {
                    **detail,
                    "parameters": [session, *detail["parameters"]],
                    "responses": {
                        **detail["responses"],
                        "409": _error("The session id exists in several projects (details.projects lists them)"),
                    },
                }
            },
            "/api/metrics": {
                "get": {
                    "summary": "Ingest counters",
                    "security": query_security,
                    "responses": {
                        "200": _ok("Metrics", "Counters"),
                        "400": _error("A header with a NUL or other unstorable character"),
                        "401": _error("Missing or invalid query key"),
                        "403": _error("A project-scoped key: the totals cover every project (forbidden_project)"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, summed over the host's workers (HEAT_PROMETHEUS_ENABLED)",
                    "description": "Public with HEAT_PROMETHEUS_PUBLIC; OpenMetrics when Accept asks for it.",
                    "security": query_security,
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format",
                            "headers": {
                                **_COMMON_HEADERS,
                                "Cache-Control": {"schema": {"type": "string", "enum": ["no-store"]}},
                            },
                            "content": {
                                "text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}},
                            },
                        },
                        "400": _error("A header with a NUL or other unstorable character"),
                        "401": _error("Missing or invalid query key"),
                        "403": _error("A project-scoped key: the totals cover every project (forbidden_project)"),
                    },
                }
            },
            "/api/projects/{projectId}/users/{userId}": {
                "delete": {
                    "summary": "Erase a user's data (admin key): every answer afterwards as if never stored",
                    "security": query_security,
                    "description": "An admin key from HEAT_ADMIN_API_KEYS (query keys are refused). "
                    "userId is the SDK's/JWT's user id or the internal id.",
                    "parameters": [project, user, _param("dryRun", {"type": "string", "enum": ["true", "false"]})],
                    "responses": {
                        "200": _admin_ok(
                            "{erased: {users, sessions, events}, verified} or, with dryRun, "
                            "{found: {...}, dryRun: true}"
                        ),
                        **_admin_errors(),
                    },
                }
            },
            "/api/projects/{projectId}/users/{userId}/export": {
                "get": {
                    "summary": "Export a user's data (admin key): {user, users, sessions, events}, streamed",
                    "security": query_security,
                    "parameters": [project, user],
                    "responses": {
                        "200": _admin_ok("The user, their sessions and events (rows as the events API answers)"),
                        **_admin_errors(),
                    },
                }
            },
            "/api/purge": {
                "post": {
                    "summary": "Apply HEAT_RETENTION_DAYS / HEAT_AGGREGATE_RETENTION_DAYS (an unscoped admin key)",
                    "security": query_security,
                    "parameters": [_param("dryRun", {"type": "string", "enum": ["true", "false"]})],
                    "responses": {
                        "200": _admin_ok(
                            "{purged|found: {events, sessions, users, aggregates}, dryRun, rawBefore, aggregatesBefore}"
                        ),
                        "409": _error("No retention is configured"),
                        **_admin_errors(),
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
        },
    }
