"""``GET /api/projects/<projectId>/compare``: two slices of one report (compare.py, docs/compare.md)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from flask import Response

from ..compare import Side, SideAnswer, compare
from ..errors import ApiError
from ..page_groups import Template
from ..repositories.base import EventFilter
from ..schemas import CompareQuerySchema
from ..slices import InvalidSlice, parse_slice
from ..state import get_state
from ..traffic import ALL, BOT, HUMAN
from ..traffic_reader import by_traffic
from . import common
from .query import _found, _group_paths, _json, _load, _report_meta, _template, _time_range

_COMPARE = CompareQuerySchema()


def _invalid(side: str, exc: InvalidSlice) -> ApiError:
    return ApiError(
        400,
        "invalid_slice",
        f"Invalid slice '{side}': {exc.reason}.",
        details={"side": side, "key": exc.key, "reason": exc.reason},
    )


def _side(
    name: str,
    query: dict[str, Any],
    project_id: str,
    shared: tuple[int | None, int | None],
    shared_group: Template | None,
) -> tuple[Side, dict[str, Any] | None]:
    """One side resolved: its text parsed, the shared parameters filled in, its group's paths found."""
    items = parse_slice(query[name])
    lo = items.ts_from if items.ts_from is not None else shared[0] if shared[0] is not None else 0
    hi = items.ts_to if items.ts_to is not None else shared[1] if shared[1] is not None else int(time.time() * 1000)
    if lo > hi:
        if items.ts_from is None and items.ts_to is None:
            raise ApiError(400, "invalid_time_range", "Query param 'from' must be less than or equal to 'to'.")
        raise InvalidSlice("the side's 'from' is after its 'to'", "from" if items.ts_from is not None else "to")
    if items.own_paths:
        path, template = items.path, items.group
    else:
        path, template = query.get("path"), shared_group
    if items.own_band:
        bucket, width = items.viewport_bucket, items.viewport_width
    else:
        bucket, width = query.get("viewportBucket"), query.get("viewportWidth")
    flt = EventFilter(project_id=project_id, path=path, ts_from=lo, ts_to=hi)
    group_meta = None
    if template is not None:
        flt, group_meta = _group_paths(flt, template, name)
    echo = {
        "from": lo,
        "to": hi,
        "path": path,
        "group": template.text if template else None,
        "viewportBucket": bucket,
        "viewportWidth": width,
        "segment": items.segment.text if items.segment else None,
    }
    return Side(name, flt, bucket, width, items.segment, echo), group_meta


def _shared_group(query: dict[str, Any]) -> Template | None:
    text = query.get("group")
    return None if text is None else _template(text)


def project_compare(project_id: str) -> Response:
    query = _load(_COMPARE)
    project_id = common.check_id(project_id, "projectId")
    if query.get("path") is not None and query.get("group") is not None:
        raise ApiError(400, "group_with_path", "Give 'path' or 'group', not both.")
    shared = _time_range(require_order=False)
    shared_group = _shared_group(query)
    sides: list[Side] = []
    groups: list[dict[str, Any] | None] = []
    for name in ("a", "b"):
        try:
            side, group = _side(name, query, project_id, shared, shared_group)
        except InvalidSlice as exc:
            raise _invalid(name, exc) from exc
        sides.append(side)
        groups.append(group)
    settings = get_state().settings
    repo, traffic = get_state().repository, query["traffic"]

    def run(by: str) -> tuple[dict[str, Any], dict[str, SideAnswer]]:
        classed = [replace(side, flt=replace(side.flt, traffic=by)) for side in sides]
        return compare(by_traffic(repo, by), query["report"], classed, query, settings.min_sample_sessions)

    body, _ = run(traffic)
    excluded = {name: {"sessions": 0, "events": 0} for name in ("a", "b")}
    if traffic != ALL:  # each side's sample in the other class (docs/traffic.md)
        _, others = run(BOT if traffic == HUMAN else HUMAN)
        for name, other in others.items():
            sample = other.body["meta"]["sample"]
            excluded[name] = {"sessions": sample["sessions"], "events": sample["events"]}
    for name, group in zip(("a", "b"), groups, strict=True):
        meta = body[name]["report"]["meta"]
        meta["excluded"] = excluded[name]
        _report_meta(meta, project_id)
        if group is not None:
            meta["group"] = group
    body["meta"] = {"projectId": project_id, "projectFound": _found(project_id)}
    return _json(body, X_Compare_Status=body["status"])
