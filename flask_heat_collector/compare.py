"""Compare two slices of one report (SPEC §10, ``GET /compare``): each side, the per-session
difference of every cell, element or depth, and whether it is beyond chance.

A side without a segment is the report itself (heatmap.py, reports.py), so it costs what the report
costs. A side with a segment (``custom:<event>.<prop>=<value>``) is the same report computed over
the raw rows of the segment's sessions only: :class:`SegmentReader` shows the report code a store
that holds nothing but those rows, building the aggregate and report pieces of the whole days from
them in memory, so every rule of the report (frame, band, reach, fold) is the report's own.

Tests (two-sided, :data:`ALPHA`): for an element the sessions that clicked it out of the side's
sessions, and for a depth the sessions that reached it, by the pooled two-proportion z-test; for a
heatmap cell its rows per session by the two-sample Poisson rate z-test (pooled rate).
"""

from __future__ import annotations

import json
import math
import sys
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

from .aggregates import piece_wanted, pieces_of_rows
from .heatmap import Heatmap, build_heatmap
from .ingest import js_round
from .listing import from_edge
from .report_pieces import piece_wanted as report_piece_wanted
from .report_pieces import rebuild
from .reports import elements, scrollmap
from .repositories.base import (
    AggregateRow,
    Blobs,
    EventFilter,
    EventRow,
    PathSet,
    PathTotal,
    Reader,
    ReportPiece,
    Repository,
    Scan,
    path_in,
)
from .signals import DEAD, ERROR, RAGE, Signal
from .slices import Segment

T = TypeVar("T")

ALPHA = 0.05  # two-sided significance level of every test
REPORTS = ("heatmap", "elements", "scrollmap")


def prop_text(value: Any) -> str | None:
    """A property value as a segment compares it: a string as it is, a number or boolean as
    JavaScript's ``String()`` writes it (``true``, ``2``, ``2.5``); anything else (null, object,
    array) matches no segment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    return value if isinstance(value, str) else None


def segment_sessions(
    reader: Reader, project_id: str, segment: Segment, ts_from: int, ts_to: int, traffic: str = "human"
) -> set[str]:
    """The sessions (of traffic class ``traffic``) that sent a tagging custom event (any path, any width)
    whose ts lies in the range."""
    flt = EventFilter(project_id=project_id, ts_from=ts_from, ts_to=ts_to, types=("custom",), traffic=traffic)
    found: set[str] = set()
    for row in from_edge(reader, flt):
        if row.session_id in found or not ts_from <= row.ts <= ts_to or not row.data_json:
            continue
        try:
            data = json.loads(row.data_json)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("name") != segment.event:
            continue
        props = data.get("props")
        if isinstance(props, dict) and prop_text(props.get(segment.prop)) == segment.value:
            found.add(row.session_id)
    return found


class SegmentReader(Reader):
    """A reader over ``rows`` alone (every stored row of some sessions on the side's paths in its
    range): scans filter them, the pieces of whole days are built from them, the settled rage clicks
    and signals are the store's of those sessions. Session ordinals are its own (1, 2, ...)."""

    def __init__(self, inner: Reader, sessions: set[str], rows: list[EventRow]) -> None:
        self.inner, self.sessions = inner, sessions
        self.rows = sorted(rows, key=lambda r: (r.ts, r.seq))
        self.keys = [(r.ts, r.seq) for r in self.rows]
        self.ordinals = {sid: i + 1 for i, sid in enumerate(sorted(sessions))}
        self._pieces: list[ReportPiece] | None = None
        self._aggregates: list[AggregateRow] | None = None

    def scan(self, what: Scan, after: tuple[int, int] | None, limit: int) -> list[EventRow]:
        """The rows after ``after`` in ``(ts, seq)`` order; ``ts_low`` is not applied (the rows
        reaching into a range come too, as :func:`listing.from_edge` allows)."""
        flt = what.flt
        found: list[EventRow] = []
        index = 0 if after is None else bisect_right(self.keys, after)
        while index < len(self.rows) and len(found) < limit:
            r = self.rows[index]
            index += 1
            if flt.ts_to is not None and r.ts > flt.ts_to:
                break
            if (
                (what.session_id is None or r.session_id == what.session_id)
                and path_in(r.path, flt.path_set)
                and (flt.types is None or r.type in flt.types)
                and (flt.other_width is None or r.view_w != flt.other_width)
            ):
                found.append(r)
        return found

    def long_moves(self, what: Scan, before: int, reaching: int) -> list[EventRow]:
        return []  # scan gives every row up to the range's end, long moves included

    def max_span(self, project_id: str) -> int:
        return self.inner.max_span(project_id)

    def aggregates(
        self, project_id: str, path: PathSet, days: tuple[int, int], *, blobs: Blobs | None = None
    ) -> list[AggregateRow]:
        if self._aggregates is None:
            self._aggregates = pieces_of_rows(self.rows, -1)
        keys = {r.path_key for r in self.rows if path_in(r.path, path)}
        return [p for p in self._aggregates if p.path_key in keys and piece_wanted(p, days, blobs)]

    def report_pieces(
        self,
        project_id: str,
        path: PathSet,
        days: tuple[int, int],
        *,
        selectors: bool = False,
        scroll: bool = False,
        width: int | None = None,
    ) -> list[ReportPiece]:
        if self._pieces is None:
            self._pieces = rebuild(self.rows, self.ordinals.__getitem__)
        return [p for p in self._pieces if path_in(p.path, path) and report_piece_wanted(p, days, width)]

    def session_ordinals(self, project_id: str, session_ids: set[str]) -> dict[str, int]:
        return {sid: self.ordinals[sid] for sid in session_ids if sid in self.ordinals}

    def rage_clicks(self, flt: EventFilter) -> list[EventRow]:
        return [c for c in self.inner.rage_clicks(flt) if c.session_id in self.sessions]

    def signals(self, flt: EventFilter, kind: str) -> list[Signal]:
        return [s for s in self.inner.signals(flt, kind) if s.session_id in self.sessions]

    def signal_selector_counts(self, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for kind in (DEAD, ERROR):
            for s in self.signals(flt, kind):
                if s.selector and (width is None or s.bucket_w == width):
                    counts[(s.selector, kind)] = counts.get((s.selector, kind), 0) + 1
        for click in self.rage_clicks(flt):
            if click.selector and (width is None or click.bucket_w == width):
                counts[(click.selector, RAGE)] = counts.get((click.selector, RAGE), 0) + 1
        return counts

    def signal_path_counts(self, flt: EventFilter) -> dict[tuple[str, str], int]:
        raise NotImplementedError  # no compared report reads it

    def fetch(self, project_id: str, event_ids: list[str]) -> list[EventRow]:
        return self.inner.fetch(project_id, event_ids)  # the signal maps read their clicks' exact widths

    def path_totals(self, project_id: str, ts_from: int | None, ts_to: int | None) -> list[PathTotal]:
        raise NotImplementedError

    def session_paths(
        self, project_id: str, ts_from: int | None, ts_to: int | None, session_ids: list[str]
    ) -> set[tuple[str, str]]:
        raise NotImplementedError

    def deepest_scrolls(self, flt: EventFilter, width: int | None) -> list[float]:
        raise NotImplementedError

    def project_found(self, project_id: str) -> bool:
        return self.inner.project_found(project_id)

    def last_item_ts(self, project_id: str) -> int | None:
        return self.inner.last_item_ts(project_id)


class _SegmentRepository:
    """What the report functions use of a repository (``read``, ``settle_rage``), reading through a
    :class:`SegmentReader` of one side's segment."""

    def __init__(self, repo: Repository, flt: EventFilter, segment: Segment) -> None:
        self.repo, self.flt, self.segment = repo, flt, segment
        self.members = 0  # the segment's sessions (before the side's path and band)

    def settle_rage(self, project_id: str | None, limit: int | None = None, *, idle_ms: int | None = None) -> int:
        return self.repo.settle_rage(project_id, limit, idle_ms=idle_ms)

    def read(self, fn: Callable[[Reader], T]) -> T:
        def run(reader: Reader) -> T:
            assert self.flt.ts_from is not None and self.flt.ts_to is not None
            members = segment_sessions(
                reader, self.flt.project_id, self.segment, self.flt.ts_from, self.flt.ts_to, self.flt.traffic
            )
            self.members = len(members)
            rows = [
                row
                for sid in sorted(members)
                for row in from_edge(reader, replace(self.flt, types=None), session_id=sid)
            ]
            return fn(SegmentReader(reader, members, rows))

        return self.repo.read(run)


@dataclass(frozen=True)
class Side:
    """One resolved side: its filter (range and paths), band, segment and what it echoes back."""

    name: str
    flt: EventFilter
    viewport_bucket: str | None
    viewport_width: int | None
    segment: Segment | None
    echo: dict[str, Any]


@dataclass
class SideAnswer:
    """A side's report body and the sessions its per-session numbers divide by."""

    body: dict[str, Any]
    sessions: int
    segment_sessions: int | None
    heatmap: Heatmap | None = None


def _repo_for(repo: Repository, side: Side) -> tuple[Repository, _SegmentRepository | None]:
    if side.segment is None:
        return repo, None
    proxy = _SegmentRepository(repo, side.flt, side.segment)
    return cast(Repository, proxy), proxy


def run_side(repo: Repository, side: Side, report: str, query: dict[str, Any]) -> SideAnswer:
    """The side's report, through the report's own function (over the segment's rows when it has one)."""
    source, proxy = _repo_for(repo, side)
    band = {
        "viewports": query["viewports"],
        "viewport_bucket": side.viewport_bucket,
        "viewport_width": side.viewport_width,
    }
    found: Heatmap | None = None
    if report == "heatmap":
        found = build_heatmap(source, side.flt, requested_type=query["type"], resolution=query["resolution"], **band)
        points = [{"x": x, "y": y, "value": v} for x, y, v in found.points]
        body: dict[str, Any] = {"points": points, "meta": found.meta}
    elif report == "elements":
        body = elements(source, side.flt, requested_type="click", limit=sys.maxsize, **band)
    else:
        body = scrollmap(source, side.flt, **band)
    sessions = int(body["meta"]["sample"]["sessions"])
    return SideAnswer(body, sessions, None if proxy is None else proxy.members, found)


def z_two_proportions(x1: int, n1: int, x2: int, n2: int) -> float | None:
    """The pooled two-proportion z statistic of ``x2/n2 - x1/n1``; ``None`` when it is undefined
    (a side without sessions, or a pooled share of 0 or 1)."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1 / n1 + 1 / n2)
    return None if variance <= 0 else (x2 / n2 - x1 / n1) / math.sqrt(variance)


def z_poisson_rates(c1: int, n1: int, c2: int, n2: int) -> float | None:
    """The z statistic of ``c2/n2 - c1/n1`` for two Poisson counts over ``n1`` and ``n2`` sessions,
    under the pooled rate ``(c1 + c2) / (n1 + n2)``; ``None`` when undefined (no sessions, no rows)."""
    if n1 <= 0 or n2 <= 0 or c1 + c2 <= 0:
        return None
    rate = (c1 + c2) / (n1 + n2)
    return (c2 / n2 - c1 / n1) / math.sqrt(rate * (1 / n1 + 1 / n2))


def p_two_sided(z: float | None) -> float | None:
    """The two-sided p-value of a standard normal statistic."""
    return None if z is None else math.erfc(abs(z) / math.sqrt(2))


def _verdict(z: float | None) -> dict[str, Any]:
    p = p_two_sided(z)
    return {"z": z, "pValue": p, "significant": p is not None and p < ALPHA}


def _rate(count: int, sessions: int) -> float:
    return count / sessions if sessions else 0.0


def cell_index(centre: int, side: float) -> int:
    """The column (or row) whose centre the heatmap placed at ``centre``: the first index ``i`` with
    ``js_round((i + 0.5) * side) == centre`` (cells narrower than a pixel that share one are one).
    The centres grow with the index, so a bisection finds it."""
    lo, hi = 0, int(centre / side) + 2
    while lo < hi:
        mid = (lo + hi) // 2
        if js_round((mid + 0.5) * side) < centre:
            lo = mid + 1
        else:
            hi = mid
    return lo


def heatmap_cells(found: Heatmap) -> dict[tuple[int, int], int]:
    """The rows per ``(cx, cy)`` cell of a heatmap answer (its points mapped back to the grid)."""
    side = found.meta["cell"]["w"]
    cells: dict[tuple[int, int], int] = {}
    for x, y, value in found.points:
        key = (cell_index(x, side), cell_index(y, side))
        cells[key] = cells.get(key, 0) + value
    return cells


def heatmap_differences(a: SideAnswer, b: SideAnswer) -> list[dict[str, Any]]:
    assert a.heatmap is not None and b.heatmap is not None
    ca, cb = heatmap_cells(a.heatmap), heatmap_cells(b.heatmap)
    out = []
    for cx, cy in sorted(set(ca) | set(cb), key=lambda k: (k[1], k[0])):
        va, vb = ca.get((cx, cy), 0), cb.get((cx, cy), 0)
        ra, rb = _rate(va, a.sessions), _rate(vb, b.sessions)
        out.append(
            {
                "cx": cx,
                "cy": cy,
                "a": {"value": va, "perSession": ra},
                "b": {"value": vb, "perSession": rb},
                "diff": rb - ra,
                **_verdict(z_poisson_rates(va, a.sessions, vb, b.sessions)),
            }
        )
    return out


def element_differences(a: SideAnswer, b: SideAnswer) -> list[dict[str, Any]]:
    ea = {e["selector"]: e for e in a.body["elements"]}
    eb = {e["selector"]: e for e in b.body["elements"]}
    out = []
    for selector in set(ea) | set(eb):
        sides = {}
        for name, found, answer in (("a", ea, a), ("b", eb, b)):
            e = found.get(selector, {"clicks": 0, "sessions": 0})
            sides[name] = {
                "clicks": e["clicks"],
                "sessions": e["sessions"],
                "clicksPerSession": _rate(e["clicks"], answer.sessions),
                "share": _rate(e["sessions"], answer.sessions),
            }
        out.append(
            {
                "selector": selector,
                **sides,
                "diff": {
                    "clicksPerSession": sides["b"]["clicksPerSession"] - sides["a"]["clicksPerSession"],
                    "share": sides["b"]["share"] - sides["a"]["share"],
                },
                **_verdict(z_two_proportions(sides["a"]["sessions"], a.sessions, sides["b"]["sessions"], b.sessions)),
            }
        )
    out.sort(key=lambda d: (-(d["a"]["clicks"] + d["b"]["clicks"]), d["selector"]))
    return out


def depth_differences(a: SideAnswer, b: SideAnswer) -> list[dict[str, Any]]:
    out = []
    for ra, rb in zip(a.body["reach"], b.body["reach"], strict=True):
        sa, sb = _rate(ra["sessions"], a.sessions), _rate(rb["sessions"], b.sessions)
        out.append(
            {
                "depth": ra["depth"],
                "a": {"sessions": ra["sessions"], "share": sa},
                "b": {"sessions": rb["sessions"], "share": sb},
                "diff": sb - sa,
                **_verdict(z_two_proportions(ra["sessions"], a.sessions, rb["sessions"], b.sessions)),
            }
        )
    return out


TESTS = {
    "heatmap": "two-sample Poisson rate z-test on rows per session (pooled rate)",
    "elements": "two-proportion z-test on sessions that clicked the element / sessions (pooled)",
    "scrollmap": "two-proportion z-test on sessions that reached the depth / sessions (pooled)",
}
_DIFFERENCES: dict[str, Callable[[SideAnswer, SideAnswer], list[dict[str, Any]]]] = {
    "heatmap": heatmap_differences,
    "elements": element_differences,
    "scrollmap": depth_differences,
}


def compare(
    repo: Repository, report: str, sides: Sequence[Side], query: dict[str, Any], min_sessions: int
) -> tuple[dict[str, Any], dict[str, SideAnswer]]:
    """The answer of ``GET /compare`` (without the meta the view adds) and each side's report."""
    answers = {side.name: run_side(repo, side, report, query) for side in sides}
    a, b = answers["a"], answers["b"]
    body: dict[str, Any] = {"report": report, "minSessions": min_sessions}
    for name, side in zip(("a", "b"), sides, strict=True):
        answer = answers[name]
        shown = dict(answer.body)
        if report == "elements":
            shown["elements"] = shown["elements"][: query["limit"]]
            shown["meta"] = dict(shown["meta"], count=len(shown["elements"]), limit=query["limit"])
        body[name] = {"slice": side.echo, "sessions": answer.sessions, "report": shown}
        if answer.segment_sessions is not None:
            body[name]["segmentSessions"] = answer.segment_sessions
    if min(a.sessions, b.sessions) < min_sessions:
        body["status"] = "insufficient_data"
        return body, answers
    differences = _DIFFERENCES[report](a, b)
    body["status"] = "ok"
    body["test"] = {"name": TESTS[report], "alpha": ALPHA, "sided": "two", "direction": "b - a"}
    body["total"] = len(differences)
    body["differences"] = differences[: query["limit"]] if report == "elements" else differences
    return body, answers
