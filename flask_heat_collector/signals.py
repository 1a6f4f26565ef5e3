"""Frustration signals other than rage clicks (SPEC §10): dead clicks, error clicks, quick backs and
excessive scrolling, decided per session on the server like rage clicks (rageclicks.py).

Every batch that stores a row of a type in ``SIGNAL_TYPES`` marks its session pending (the rage
mark); settling a pending session decides its signals again over all those rows and stores the
difference, so a late batch that brings a click's effect un-deads it. Reports read the stored
signal rows of their range, never every event. Backend-free; the definitions, all on one session's
rows in ``(ts, seq)`` order ("after" a row: later in that order):

- **dead click**: a click with no pageview, scroll, input, nor click on another selector after it
  within ``dead_click_ms`` (its ts + dead_click_ms included); a click whose selector matches an
  ignore pattern (``selector_ignored``) is never dead.
- **error click**: a click with a custom event named in ``error_event_names`` after it within 1,000 ms.
- **quick back**: a pageview of path B right after a pageview of path A ≠ B, followed by the next
  pageview back to A within ``quick_back_ms`` of B's; the signal is B's pageview row.
- **excessive scrolling**: per path, the scroll rows and clicks in order; a scroll row whose
  ``scrollY`` moves the other way than the last move (equal values move nowhere) is a reversal.
  When the reversals of the last 60 s (ts >= this one's - 60,000) number more than
  ``scroll_reversals``, this scroll row is one episode and the reversal count starts again; a click
  on the path also starts it again (and forgets the direction).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

DEAD, ERROR, QUICK_BACK, SCROLL = "dead", "error", "quickback", "scroll"
KINDS = (DEAD, ERROR, QUICK_BACK, SCROLL)
RAGE = "rage"  # the rage clicks' name in ``sessions?signal=`` (stored by rageclicks.py)
SIGNAL_NAMES = (RAGE, *KINDS)  # what ``sessions?signal=`` accepts
DEADCLICK, ERRORCLICK = "deadclick", "errorclick"  # heatmap types
HEATMAP_KINDS = {DEADCLICK: DEAD, ERRORCLICK: ERROR}
SIGNAL_TYPES = ("click", "pageview", "scroll", "input", "custom")  # the rows signals are decided from
ERROR_CLICK_MS = 1000
SCROLL_WINDOW_MS = 60_000
DEFAULT_IGNORE = ("input*", "textarea*", "select*", "*[download]*", "*[download=*")


@dataclass(frozen=True)
class SignalRules:
    """The thresholds (``HEAT_DEAD_CLICK_MS``, ``HEAT_SIGNAL_IGNORE_SELECTORS``,
    ``HEAT_ERROR_EVENT_NAMES``, ``HEAT_QUICK_BACK_MS``, ``HEAT_SCROLL_REVERSALS``)."""

    dead_click_ms: int = 1500
    ignore_selectors: tuple[str, ...] = DEFAULT_IGNORE
    error_event_names: tuple[str, ...] = ("error",)
    quick_back_ms: int = 7000
    scroll_reversals: int = 6


DEFAULT_RULES = SignalRules()


class SessionRow(NamedTuple):
    """One stored row of a session as settling reads it (no move points, no meta)."""

    event_id: str
    seq: int
    type: str
    ts: int
    path: str
    path_key: int
    selector: str | None
    x: int | None
    y: int | None
    bucket_w: int
    bucket_h: int
    data_json: str | None
    view_w: int | None = None  # the exact viewport width (events.view_w)


class Signal(NamedTuple):
    """One stored signal: ``kind`` of the row ``event_id`` (a click, a pageview or a scroll row)."""

    kind: str
    event_id: str
    seq: int
    session_id: str
    ts: int
    path: str
    path_key: int
    selector: str | None
    x: int | None
    y: int | None
    bucket_w: int
    bucket_h: int
    view_w: int | None = None  # the row's exact viewport width; None: stored before it was kept


SIGNAL_FIELDS = Signal._fields


@lru_cache(maxsize=64)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def target_of(selector: str) -> str:
    """The last compound of a selector: the clicked element's own part (after the last space, ``>``,
    ``+`` or ``~``)."""
    parts = re.split(r"[\s>+~]+", selector.strip())
    return parts[-1] if parts else ""


def selector_ignored(selector: str | None, patterns: Sequence[str]) -> bool:
    """Whether a pattern matches the whole last compound of ``selector``; only ``*`` is special (any
    run of characters), every other character matches itself."""
    if not selector:
        return False
    target = target_of(selector)
    return any(_pattern(p).fullmatch(target) is not None for p in patterns)


def _data(row: SessionRow) -> dict[str, object]:
    if not row.data_json:
        return {}
    found = json.loads(row.data_json)
    return found if isinstance(found, dict) else {}


def decide(session_id: str, rows: Sequence[SessionRow], rules: SignalRules = DEFAULT_RULES) -> list[Signal]:
    """The signals of one session's ``rows`` (every row of ``SIGNAL_TYPES``, in ``(ts, seq)`` order)."""

    def signal(kind: str, row: SessionRow) -> Signal:
        return Signal(kind, row.event_id, row.seq, session_id, row.ts, row.path, row.path_key, row.selector,
                      row.x, row.y, row.bucket_w, row.bucket_h, row.view_w)  # fmt: skip

    found: list[Signal] = []
    names = set(rules.error_event_names)
    for i, row in enumerate(rows):
        if row.type != "click":
            continue
        dead = not selector_ignored(row.selector, rules.ignore_selectors)
        error = False
        for later in rows[i + 1 :]:
            gap = later.ts - row.ts
            if gap > max(rules.dead_click_ms, ERROR_CLICK_MS):
                break
            if gap <= rules.dead_click_ms and (
                later.type in ("pageview", "scroll", "input")
                or (later.type == "click" and later.selector != row.selector)
            ):
                dead = False
            if gap <= ERROR_CLICK_MS and later.type == "custom" and _data(later).get("name") in names:
                error = True
        if dead:
            found.append(signal(DEAD, row))
        if error:
            found.append(signal(ERROR, row))
    views = [row for row in rows if row.type == "pageview"]
    for before, view, after in zip(views, views[1:], views[2:], strict=False):
        if before.path != view.path and after.path == before.path and after.ts - view.ts <= rules.quick_back_ms:
            found.append(signal(QUICK_BACK, view))
    found += [signal(SCROLL, row) for row in _scroll_episodes(rows, rules)]
    return found


def _scroll_episodes(rows: Sequence[SessionRow], rules: SignalRules) -> list[SessionRow]:
    """The scroll rows that end an episode of excessive scrolling (see the module's docstring)."""
    last_y: dict[str, float] = {}
    direction: dict[str, int] = {}
    reversals: dict[str, list[int]] = {}
    found: list[SessionRow] = []
    for row in rows:
        if row.type == "click":
            direction.pop(row.path, None)
            reversals.pop(row.path, None)
            continue
        if row.type != "scroll":
            continue
        y = _data(row).get("scrollY")
        if not isinstance(y, int | float) or isinstance(y, bool):
            continue
        prev = last_y.get(row.path)
        last_y[row.path] = y
        if prev is None or y == prev:
            continue
        way = 1 if y > prev else -1
        turned = direction.get(row.path, way) != way
        direction[row.path] = way
        if not turned:
            continue
        recent = [t for t in reversals.get(row.path, []) if t >= row.ts - SCROLL_WINDOW_MS] + [row.ts]
        if len(recent) > rules.scroll_reversals:
            found.append(row)
            recent = []
        reversals[row.path] = recent
    return found


def settle(
    session_id: str, rows: Sequence[SessionRow], stored: Iterable[tuple[str, str]], rules: SignalRules
) -> tuple[list[Signal], list[tuple[str, str]]]:
    """What turns a session's stored signals (``stored``: their ``(kind, event_id)``) into those of its
    ``rows``: the signals to add and the keys to remove."""
    now = {(s.kind, s.event_id): s for s in decide(session_id, rows, rules)}
    known = set(stored)
    return [s for key, s in now.items() if key not in known], sorted(known - now.keys())
