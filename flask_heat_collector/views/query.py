"""The query API: heatmap, scroll map, elements, paths, events, sessions, session detail and metrics."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import Schema, ValidationError

from ..aggregates import items
from ..auth import Scope, check_query_key, require_project, require_unscoped
from ..errors import ApiError
from ..heatmap import Heatmap, build_heatmap, heatmap_json
from ..listing import event_page, from_edge
from ..openapi import build_openapi
from ..page_groups import MAX_GROUP_PATHS, InvalidTemplate, Template, parse
from ..projects import project_found, project_list
from ..reports import elements, group_paths, group_preview, paths, scrollmap
from ..repositories.base import EventFilter, Reader, Repository, Session, SessionQuery
from ..repositories.session_sets import SessionSet
from ..samples import mark_small
from ..schemas import (
    MAX_QUERY_TIME,
    ElementsQuerySchema,
    EventsQuerySchema,
    HeatmapQuerySchema,
    PageGroupPreviewQuerySchema,
    PathsQuerySchema,
    ScrollmapQuerySchema,
    SessionDetailQuerySchema,
    SessionsQuerySchema,
)
from ..serialize import event_json, session_json
from ..signals import SIGNAL_NAMES
from ..state import get_state
from ..traffic import ALL, BOT, HUMAN
from ..traffic_reader import by_traffic
from ..visits import visited_sessions
from . import common

_HEATMAP = HeatmapQuerySchema()
_EVENTS = EventsQuerySchema()
_SESSIONS = SessionsQuerySchema()
_DETAIL = SessionDetailQuerySchema()
_SCROLLMAP = ScrollmapQuerySchema()
_ELEMENTS = ElementsQuerySchema()
_PATHS = PathsQuerySchema()
_PREVIEW = PageGroupPreviewQuerySchema()


def parse_time(value: str) -> int | None:
    """Unix ms, or an ISO 8601 / RFC 2822 date (UTC when no zone is given); ``None`` if neither."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return int(number) if math.isfinite(number) and abs(number) < MAX_QUERY_TIME else None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


def _time_range(require_order: bool = True) -> tuple[int | None, int | None]:
    result: list[int | None] = []
    for name in ("from", "to"):
        raw = request.args.get(name)
        value = parse_time(raw) if raw else None
        if raw and value is None:
            raise ApiError(
                400,
                f"invalid_{name}",
                f"Query param '{name}' must be a unix timestamp in milliseconds or a valid date string.",
            )
        result.append(value)
    start, end = result
    if require_order and start is not None and end is not None and start > end:
        raise ApiError(400, "invalid_time_range", "Query param 'from' must be less than or equal to 'to'.")
    return start, end


def _load(schema: Schema) -> dict[str, Any]:
    try:
        result: dict[str, Any] = schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, "invalid_query", "Invalid query parameters.", details=exc.messages) from exc
    return result


def _types(value: str | None) -> tuple[str, ...] | None:
    return None if value in (None, "all") else (str(value),)


def _json(body: dict[str, Any], **headers: str) -> Response:
    response = jsonify(body)
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return common.no_store(response)


def _found(project_id: str) -> bool:
    """``meta.projectFound``: a project endpoint answers as before for an unknown id, and says so."""
    return project_found(get_state().repository, project_id)


def _report_meta(meta: dict[str, Any], project_id: str) -> None:
    """What every report's ``meta`` adds to its answer: ``sample.small`` and ``projectFound``."""
    mark_small(meta["sample"], get_state().settings.min_sample_sessions)
    meta["projectFound"] = _found(project_id)


def _map_range(project_id: str, path: str | None) -> EventFilter:
    """The filter of a map: ``from`` defaults to 0 and ``to`` to now, checked after the defaults."""
    start, end = _time_range(require_order=False)
    start = 0 if start is None else start
    end = int(time.time() * 1000) if end is None else end
    if start > end:
        raise ApiError(400, "invalid_time_range", "Query param 'from' must be less than or equal to 'to'.")
    return EventFilter(project_id=common.check_id(project_id, "projectId"), path=path, ts_from=start, ts_to=end)


def _template(text: str) -> Template:
    """A page group's template, or 400 ``invalid_group`` saying what breaks its syntax."""
    try:
        return parse(text)
    except InvalidTemplate as exc:
        raise ApiError(400, "invalid_group", f"Invalid page group template: {exc}.") from exc


def _grouped(flt: EventFilter, query: dict[str, Any]) -> tuple[EventFilter, dict[str, Any] | None]:
    """``flt`` narrowed to the paths of the ``group`` query parameter (every path of the range the
    template matches, page_groups.py), and ``meta.group``; ``flt`` as it is without one."""
    text = query.get("group")
    if text is None:
        return flt, None
    if query.get("path") is not None:
        raise ApiError(400, "group_with_path", "Give 'path' or 'group', not both.")
    return _group_paths(flt, _template(text))


def _group_paths(flt: EventFilter, template: Template, side: str | None = None) -> tuple[EventFilter, dict[str, Any]]:
    """``flt`` narrowed to the paths of its range that ``template`` matches, and ``meta.group``; 400
    ``group_too_broad`` over ``MAX_GROUP_PATHS`` paths (naming the compare ``side`` when given)."""
    # the paths of every traffic class: the answer and its meta.excluded read the same paths
    matched = group_paths(by_traffic(get_state().repository, ALL), replace(flt, traffic=ALL), template)
    if len(matched) > MAX_GROUP_PATHS:
        if side is not None:
            raise ApiError(
                400,
                "group_too_broad",
                f"Side '{side}': the group matches {len(matched)} paths; at most {MAX_GROUP_PATHS} are read at once.",
                details={"side": side, "paths": len(matched)},
            )
        raise ApiError(
            400,
            "group_too_broad",
            f"The group matches {len(matched)} paths in this range; at most {MAX_GROUP_PATHS} may be read at once.",
        )
    return replace(flt, paths=matched), {"template": template.text, "paths": len(matched)}


def _band(query: dict[str, Any]) -> dict[str, Any]:
    """The width band parameters of a map, elements or scroll map query, as the report functions take them."""
    return {
        "viewports": query["viewports"],
        "viewport_bucket": query.get("viewportBucket"),
        "viewport_width": query.get("viewportWidth"),
    }


def _by_class(
    run: Callable[[Repository, EventFilter], dict[str, Any]], flt: EventFilter, traffic: str
) -> dict[str, Any]:
    """A report of traffic class ``traffic`` (its ``meta`` or body with ``meta``), its ``meta.excluded``
    the sample the same query has in the other classes (none for ``all``): docs/traffic.md."""
    repo = get_state().repository
    body = run(by_traffic(repo, traffic), replace(flt, traffic=traffic))
    meta = body.get("meta", body)
    excluded = {"sessions": 0, "events": 0}
    if traffic != ALL:
        other = BOT if traffic == HUMAN else HUMAN
        other_body = run(by_traffic(repo, other, sample_only=True), replace(flt, traffic=other))
        sample = other_body.get("meta", other_body)["sample"]
        excluded = {"sessions": sample["sessions"], "events": sample["events"]}
    meta["excluded"] = excluded
    return body


def _with_group(meta: dict[str, Any], group: dict[str, Any] | None) -> None:
    if group is not None:
        meta["group"] = group


def heatmap(project_id: str) -> Response:
    query = _load(_HEATMAP)
    flt, group = _grouped(_map_range(project_id, query.get("path")), query)
    found: list[Heatmap] = []

    def run(repo: Repository, by: EventFilter) -> dict[str, Any]:
        answer = build_heatmap(
            repo,
            by,
            requested_type=query.get("type"),
            resolution=query["resolution"],
            **_band(query),
            anchor=query["anchor"],
        )
        found.append(answer)
        return answer.meta

    _by_class(run, flt, query["traffic"])
    result = found[0]
    meta = result.meta
    _report_meta(meta, project_id)
    _with_group(meta, group)
    response = Response(heatmap_json(result), mimetype="application/json")
    response.headers["X-Result-Count"] = str(meta["total"])
    response.headers["X-Heatmap-Point-Count"] = str(len(result.points))
    response.headers["X-Requested-Type"] = meta["requestedType"]
    response.headers["X-Resolved-Type"] = meta["resolvedType"]
    return common.no_store(response)


def project_scrollmap(project_id: str) -> Response:
    query = _load(_SCROLLMAP)
    flt, group = _grouped(_map_range(project_id, query.get("path")), query)
    body = _by_class(lambda repo, by: scrollmap(repo, by, **_band(query)), flt, query["traffic"])
    _report_meta(body["meta"], project_id)
    _with_group(body["meta"], group)
    return _json(body, X_Result_Count=str(body["meta"]["sessions"]))


def project_elements(project_id: str) -> Response:
    query = _load(_ELEMENTS)
    start, end = _time_range()
    flt, group = _grouped(EventFilter(common.check_id(project_id, "projectId"), query.get("path"), start, end), query)
    body = _by_class(
        lambda repo, by: elements(repo, by, requested_type=query["type"], limit=query["limit"], **_band(query)),
        flt,
        query["traffic"],
    )
    _report_meta(body["meta"], project_id)
    _with_group(body["meta"], group)
    return _json(body, X_Total_Count=str(body["meta"]["count"]))


def projects() -> Response:
    body = {"projects": project_list(get_state().repository, g.heat_scope)}
    return _json(body, X_Total_Count=str(len(body["projects"])))


def project_paths(project_id: str) -> Response:
    query = _load(_PATHS)
    start, end = _time_range()
    flt = EventFilter(common.check_id(project_id, "projectId"), None, start, end)
    group = _template(query["group"]) if query.get("group") is not None else None
    configured = tuple(parse(text) for text in get_state().settings.page_groups) if query["groups"] else None
    body = _by_class(
        lambda repo, by: paths(
            repo, by, prefix=query.get("q") or None, limit=query["limit"], group=group, groups=configured
        ),
        flt,
        query["traffic"],
    )
    _report_meta(body["meta"], project_id)
    return _json(body, X_Total_Count=str(body["meta"]["count"]))


def page_group_preview(project_id: str) -> Response:
    query = _load(_PREVIEW)
    start, end = _time_range()
    template = _template(query["template"])
    flt = EventFilter(common.check_id(project_id, "projectId"), None, start, end)
    body = _by_class(lambda repo, by: group_preview(repo, by, template, limit=query["limit"]), flt, query["traffic"])
    body["meta"]["configured"] = template.text in get_state().settings.page_groups
    _report_meta(body["meta"], project_id)
    return _json(body, X_Total_Count=str(body["meta"]["count"]))


def project_events(project_id: str) -> Response:
    query = _load(_EVENTS)
    start, end = _time_range()
    requested = query.get("type", "all")
    flt, group = _grouped(
        EventFilter(common.check_id(project_id, "projectId"), query.get("path"), start, end, _types(requested)), query
    )
    traffic = query["traffic"]
    found = event_page(get_state().repository, replace(flt, traffic=traffic), query["limit"], query["offset"])
    body: dict[str, Any] = {
        "events": [event_json(e) for e in found],
        "meta": {
            "count": len(found),
            "limit": query["limit"],
            "offset": query["offset"],
            "projectId": project_id,
            "requestedType": requested,
            "projectFound": _found(project_id),
            "excluded": _excluded_events(flt, traffic),
        },
    }
    _with_group(body["meta"], group)
    return _json(body, X_Total_Count=str(len(found)), X_Requested_Type=requested)


def _excluded_events(flt: EventFilter, traffic: str) -> dict[str, int]:
    """The event rows (a move: its points, as the list counts them) of ``flt`` in the other traffic
    class, and their sessions: read from that class's rows."""
    if traffic == ALL:
        return {"sessions": 0, "events": 0}
    other = replace(flt, traffic=BOT if traffic == HUMAN else HUMAN)

    def count(reader: Reader) -> dict[str, int]:
        sessions: set[str] = set()
        events = 0
        lo, hi = flt.ts_from, flt.ts_to
        for row in from_edge(reader, other, light=True):
            n = sum(1 for _, ts, _, _ in items(row) if (lo is None or ts >= lo) and (hi is None or ts <= hi))
            if n:
                events += n
                sessions.add(row.session_id)
        return {"sessions": len(sessions), "events": events}

    return get_state().repository.read(count)


def project_sessions(project_id: str) -> Response:
    query = _load(_SESSIONS)
    start, end = _time_range()
    repo = get_state().repository
    repo.settle_rage(common.check_id(project_id, "projectId"))
    bucket, width = query.get("viewportBucket"), query.get("viewportWidth")
    width = int(bucket.split("x")[0]) if bucket else width  # the band of the bucket's width, as the map's
    visited = query.get("visitedPath")

    def among_of(traffic: str) -> SessionSet | None:
        if visited is None and width is None:
            return None
        return visited_sessions(repo, project_id, visited, start, end, width, traffic)

    asked = SessionQuery(
        project_id=common.check_id(project_id, "projectId"),
        started_from=start,
        last_seen_to=end,
        user_id=query.get("userId"),
        first_path=query.get("path"),
        descending=query["order"] == "desc",
        limit=query["limit"],
        offset=query["offset"],
        signal=query.get("signal"),
        among=among_of(query["traffic"]),
        traffic=query["traffic"],
    )
    found = repo.list_sessions(asked)
    excluded = {"sessions": 0, "events": 0}
    if asked.traffic != ALL:  # the other class's sessions of the same filters (their stored counters)
        other = BOT if asked.traffic == HUMAN else HUMAN
        others = repo.list_sessions(replace(asked, traffic=other, among=among_of(other), limit=2**62, offset=0))
        excluded = {"sessions": len(others), "events": sum(s.event_count for s in others)}
    external = repo.external_user_ids(project_id, [s.user_id for s in found if s.user_id])
    items = [
        {
            "sessionId": s.session_id,
            "userId": s.user_id,
            "externalUserId": external.get(s.user_id) if s.user_id else None,
            "startedAt": s.started_at,
            "lastSeenAt": s.last_seen_at,
            "firstPath": s.first_path,
            "eventCount": s.event_count,
            "signals": {name: s.signals.get(name, 0) for name in SIGNAL_NAMES},
        }
        for s in found
    ]
    meta = {
        "count": len(items),
        "limit": query["limit"],
        "offset": query["offset"],
        "projectId": project_id,
        "projectFound": _found(project_id),
        "excluded": excluded,
    }
    return _json({"sessions": items, "meta": meta}, X_Total_Count=str(len(items)))


def _find_sessions(session_id: str, project_id: str | None) -> list[Session]:
    """The sessions with this id in ``project_id``, else in every project the key may read."""
    repo = get_state().repository
    scope: Scope = g.heat_scope
    if project_id is not None or scope is None:
        return repo.find_sessions(session_id, project_id)
    return [s for p in sorted(scope) for s in repo.find_sessions(session_id, p)]


def session_detail(session_id: str, project_id: str | None = None) -> Response:
    query = _load(_DETAIL)
    repo = get_state().repository
    session_id = common.check_id(session_id, "sessionId")
    project = common.check_id(project_id, "projectId") if project_id is not None else None
    found_sessions = _find_sessions(session_id, project)
    projects = sorted({s.project_id for s in found_sessions})
    if len(projects) > 1:  # never mix projects: the caller picks one
        raise ApiError(
            409,
            "ambiguous_session",
            "This session id exists in several projects; use /api/projects/<projectId>/sessions/<sessionId>.",
            details={"projects": projects},  # bounded by error_response like every error's details
        )
    session = found_sessions[0] if found_sessions else None
    found = (
        []
        if session is None
        else event_page(
            repo,
            EventFilter(project_id=session.project_id, types=_types(query.get("type"))),
            query["limit"],
            query["offset"],
            session_id=session.id,
        )
    )
    body: dict[str, Any] = {
        "session": session_json(session, repo.external_user_ids(session.project_id, [session.user_id or ""]))
        if session
        else None,
        "events": [event_json(e) for e in found],
        "meta": {"found": session is not None, "count": len(found), "limit": query["limit"], "offset": query["offset"]},
    }
    if project is not None:
        body["meta"]["projectFound"] = session is not None or _found(project)
    return _json(body, X_Session_Found="1" if session else "0", X_Total_Count=str(len(found)))


def project_session_detail(project_id: str, session_id: str) -> Response:
    return session_detail(session_id, project_id)


def metrics() -> Response:
    require_unscoped(g.heat_scope)
    body = {
        "metrics": get_state().metrics.snapshot(),
        "requestId": common.request_id(),
        "now": int(time.time() * 1000),
    }
    return _json(body)


def openapi_document() -> Response:
    state = get_state()
    if state.openapi is None:  # built on first use, once per app (its settings shape it)
        state.openapi = build_openapi(state.ingest_schema)
    return _json(state.openapi)


def _require_key() -> Response | None:
    """Preflights answer without a key; every other request needs one that may read its project."""
    if request.method == "OPTIONS":
        return _preflight()
    if (request.endpoint or "").endswith(".openapi_document"):
        return None
    state = get_state()
    g.heat_scope = check_query_key(request, state.settings, state.query_keys)
    project_id = (request.view_args or {}).get("project_id")
    if isinstance(project_id, str):
        require_project(g.heat_scope, project_id)
    return None


_CORS_HEADERS = "Authorization, X-Api-Key"
_CORS_EXPOSED = (
    "X-Request-Id, X-Total-Count, X-Result-Count, X-Heatmap-Point-Count, X-Requested-Type, X-Resolved-Type, "
    "X-Session-Found"
)


def _allowed_origin() -> str | None:
    """The request's Origin when HEAT_QUERY_ALLOWED_ORIGINS lists it (never ``*``, never credentials)."""
    origin = request.headers.get("Origin")
    return origin if origin and origin in get_state().settings.query_allowed_origins else None


def _preflight() -> Response:
    response = Response(status=204)
    if _allowed_origin() is not None:
        response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _cors(response: Response) -> Response:
    """CORS for dashboards on the origins of HEAT_QUERY_ALLOWED_ORIGINS."""
    if get_state().settings.query_allowed_origins:
        response.vary.add("Origin")
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSED
    return response


def create_api_blueprint() -> Blueprint:
    from .compare import project_compare  # it imports this module's helpers

    bp = Blueprint("heat_api", __name__)
    common.install(bp)
    bp.before_request(_require_key)
    bp.after_request(_cors)
    bp.add_url_rule("/api/projects", view_func=projects)
    bp.add_url_rule("/api/projects/<project_id>/heatmap", view_func=heatmap)
    bp.add_url_rule("/api/projects/<project_id>/scrollmap", view_func=project_scrollmap)
    bp.add_url_rule("/api/projects/<project_id>/elements", view_func=project_elements)
    bp.add_url_rule("/api/projects/<project_id>/paths", view_func=project_paths)
    bp.add_url_rule("/api/projects/<project_id>/page-groups/preview", view_func=page_group_preview)
    bp.add_url_rule("/api/projects/<project_id>/compare", view_func=project_compare)
    bp.add_url_rule("/api/projects/<project_id>/events", view_func=project_events)
    bp.add_url_rule("/api/projects/<project_id>/sessions", view_func=project_sessions)
    bp.add_url_rule("/api/projects/<project_id>/sessions/<session_id>", view_func=project_session_detail)
    bp.add_url_rule("/api/sessions/<session_id>", view_func=session_detail)
    bp.add_url_rule("/api/metrics", view_func=metrics)
    bp.add_url_rule("/api/openapi.json", view_func=openapi_document)
    return bp
