"""``GET /api/projects/<projectId>/compare``: two slices of one report (compare.py, docs/compare.md)."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from flask import Response

from ..compare import InvalidSlice, Segment, Side, compare, parse_segment, parse_slice
from ..errors import ApiError
from ..page_groups import MAX_GROUP_PATHS, InvalidTemplate, parse
from ..reports import group_paths
from ..repositories.base import EventFilter
from ..schemas import MAX_PATH, MAX_VIEWPORT_WIDTH, CompareQuerySchema
from ..state import get_state
from . import common
from .query import _found, _json, _load, _report_meta, _time_range, parse_time

_COMPARE = CompareQuerySchema()
_BUCKET = re.compile(r"^\d{1,6}x\d{1,6}$")


def _invalid(side: str, exc: InvalidSlice) -> ApiError:
    return ApiError(
        400,
        "invalid_slice",
        f"Invalid slice '{side}': {exc.reason}.",
        details={"side": side, "key": exc.key, "reason": exc.reason},
    )


def _time(items: dict[str, str], key: str) -> int | None:
    if key not in items:
        return None
    value = parse_time(items[key])
    if value is None:
        raise InvalidSlice(f"'{key}' must be unix milliseconds or a date", key)
    return value


def _band(items: dict[str, str], query: dict[str, Any]) -> tuple[str | None, int | None]:
    """The side's viewportBucket and viewportWidth: its own when it gives either, else the shared ones."""
    if "viewportBucket" not in items and "viewportWidth" not in items:
        return query.get("viewportBucket"), query.get("viewportWidth")
    bucket = items.get("viewportBucket")
    if bucket is not None and not _BUCKET.match(bucket):
        raise InvalidSlice("'viewportBucket' is WxH, such as 1280x720", "viewportBucket")
    width: int | None = None
    if "viewportWidth" in items:
        text = items["viewportWidth"]
        if not text.isdigit() or not 1 <= int(text) <= MAX_VIEWPORT_WIDTH:
            raise InvalidSlice(f"'viewportWidth' is an integer from 1 to {MAX_VIEWPORT_WIDTH}", "viewportWidth")
        width = int(text)
    return bucket, width


def _side(
    name: str, query: dict[str, Any], project_id: str, shared: tuple[int | None, int | None]
) -> tuple[Side, dict[str, Any] | None]:
    """One side resolved: its text parsed, the shared parameters filled in, its group's paths found."""
    text = query.get(name)
    if text is None:
        raise InvalidSlice(f"the query parameter '{name}' is required (it may be empty)")
    items = parse_slice(text)
    start, end = _time(items, "from"), _time(items, "to")
    lo = start if start is not None else shared[0] if shared[0] is not None else 0
    hi = end if end is not None else shared[1] if shared[1] is not None else int(time.time() * 1000)
    if lo > hi:
        if start is None and end is None:
            raise ApiError(400, "invalid_time_range", "Query param 'from' must be less than or equal to 'to'.")
        raise InvalidSlice("the side's 'from' is after its 'to'", "from" if start is not None else "to")
    own = "path" in items or "group" in items
    path = items.get("path") if own else query.get("path")
    group = items.get("group") if own else query.get("group")
    if path is not None and len(path) > MAX_PATH:
        raise InvalidSlice(f"'path' is at most {MAX_PATH} characters", "path")
    bucket, width = _band(items, query)
    segment: Segment | None = parse_segment(items["segment"]) if "segment" in items else None
    flt = EventFilter(project_id=project_id, path=path, ts_from=lo, ts_to=hi)
    group_meta = None
    if group is not None:
        try:
            template = parse(group)
        except InvalidTemplate as exc:
            raise InvalidSlice(f"invalid page group template: {exc}", "group") from exc
        matched = group_paths(get_state().repository, flt, template)
        if len(matched) > MAX_GROUP_PATHS:
            raise ApiError(
                400,
                "group_too_broad",
                f"Side '{name}': the group matches {len(matched)} paths; at most {MAX_GROUP_PATHS} are read at once.",
                details={"side": name, "paths": len(matched)},
            )
        flt = replace(flt, paths=matched)
        group_meta = {"template": template.text, "paths": len(matched)}
    echo = {
        "from": lo,
        "to": hi,
        "path": path,
        "group": group,
        "viewportBucket": bucket,
        "viewportWidth": width,
        "segment": segment.text if segment else None,
    }
    return Side(name, flt, bucket, width, segment, echo), group_meta


def project_compare(project_id: str) -> Response:
    query = _load(_COMPARE)
    project_id = common.check_id(project_id, "projectId")
    if query.get("path") is not None and query.get("group") is not None:
        raise ApiError(400, "group_with_path", "Give 'path' or 'group', not both.")
    shared = _time_range(require_order=False)
    sides: list[Side] = []
    groups: list[dict[str, Any] | None] = []
    for name in ("a", "b"):
        try:
            side, group = _side(name, query, project_id, shared)
        except InvalidSlice as exc:
            raise _invalid(name, exc) from exc
        sides.append(side)
        groups.append(group)
    settings = get_state().settings
    body, _ = compare(get_state().repository, query["report"], sides, query, settings.min_sample_sessions)
    for name, group in zip(("a", "b"), groups, strict=True):
        meta = body[name]["report"]["meta"]
        _report_meta(meta, project_id)
        if group is not None:
            meta["group"] = group
    body["meta"] = {"projectId": project_id, "projectFound": _found(project_id)}
    if query.get("type") and query["report"] == "heatmap":
        body["meta"]["type"] = query["type"]
    return _json(body, X_Compare_Status=body["status"])
