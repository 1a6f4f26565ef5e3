"""Turn a validated ingest payload into the rows to store (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from .repositories.base import Batch, EventRow, SessionRow
from .traffic import agent_verdict

SCRUBBED_META_KEYS = frozenset({"value", "text", "content"})
TYPE_FIELDS = ("name", "props", "action", "category", "from", "to", "button", "scrollY", "inputType", "length")
MAX_USER_AGENT = 1024
_BUCKET = re.compile(r"^(\d{1,6})x(\d{1,6})$")


def js_round(value: float) -> int:
    """Round half up, like JavaScript's ``Math.round``."""
    return math.floor(value + 0.5)


def parse_bucket(value: Any) -> tuple[int, int] | None:
    """``"WxH"`` as ``(w, h)`` when both are positive, else ``None``."""
    match = _BUCKET.match(value) if isinstance(value, str) else None
    if not match or not int(match[1]) or not int(match[2]):
        return None
    return int(match[1]), int(match[2])


def view_width(meta_json: str | None, bucket_w: int) -> int:
    """The exact viewport width of a stored event (``viewport.w`` of its meta JSON, rounded as ingest
    rounds it); ``bucket_w`` when the JSON holds none (rows stored before the width was kept)."""
    try:
        w = json.loads(meta_json or "{}").get("viewport", {}).get("w")
    except (ValueError, AttributeError):
        return bucket_w
    return js_round(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else bucket_w


def viewport_bucket(meta: dict[str, Any] | None, w: float, h: float) -> tuple[int, int]:
    """``meta.viewportBucket`` when it parses, else the viewport rounded to 100 px."""
    explicit = parse_bucket((meta or {}).get("viewportBucket"))
    return explicit or (js_round(w / 100) * 100, js_round(h / 100) * 100)


def hash_ip(ip: str | None, secret: str) -> str | None:
    """HMAC-SHA256 of the client IP; the raw address is never stored."""
    if not ip:
        return None
    return hmac.new(secret.encode(), ip.encode(), hashlib.sha256).hexdigest()


def is_unmasked_input(event: dict[str, Any]) -> bool:
    """An input event whose ``masked`` text holds anything but ``*`` (a raw value)."""
    masked = event.get("masked")
    return event["type"] == "input" and isinstance(masked, str) and masked.strip("*") != ""


_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_dumps = _JSON.encode  # one encoder, not one per call as json.dumps(..., separators=...) builds


def path_key(path: str) -> int:
    """A fixed-size key of ``path`` for indexes: the first 8 bytes of its SHA-256, as a signed int64."""
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SeqClock:
    """Storage order across batches: microseconds since the epoch, never repeating in this process."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> int:
        """The first of ``count`` consecutive sequence numbers, all later than any taken before."""
        with self._lock:
            first = max(time.time_ns() // 1000, self._last + 1)
            self._last = first + max(count, 1) - 1
            return first


def event_row(event: dict[str, Any], session_id: str, seq: int) -> EventRow | None:
    """The stored row of one event (``None`` for a move without points: it has no rows)."""
    meta = event.get("meta")
    scrubbed = {k: v for k, v in meta.items() if k not in SCRUBBED_META_KEYS} if meta is not None else None
    viewport = event["viewport"]
    bw, bh = viewport_bucket(meta, viewport["w"], viewport["h"])
    data = {k: event[k] for k in TYPE_FIELDS if k in event}
    kind = event["type"]
    ts = event["ts"]
    x = y = depth = None
    points: str | None = None
    span, items = 0, 1
    if kind == "move":
        raw = event["points"]
        if not raw:
            return None
        ts, span, points = pack_points(
            [(js_round(ts + p["tsOffset"]), js_round(p["x"]), js_round(p["y"])) for p in raw]
        )
        items = len(raw)
    else:
        ts = js_round(ts)
        if kind == "click":
            x, y = js_round(event["x"]), js_round(event["y"])
        elif kind == "scroll":
            depth = js_round(event["scrollDepthPct"])
    return EventRow(
        event_id=event["eventId"],
        seq=seq,
        session_id=session_id,
        type=kind,
        ts=ts,
        span=span,
        path=event["path"],
        path_key=path_key(event["path"]),
        selector=event.get("selector"),
        x=x,
        y=y,
        scroll_depth=depth,
        bucket_w=bw,
        bucket_h=bh,
        view_w=js_round(viewport["w"]),
        meta_json=_dumps({"viewport": viewport, "device": event["device"], "meta": scrubbed}),
        row_count=items,
        points=points,
        data_json=_dumps(data) if data else None,
    )


def move_stamps(row: EventRow | Any) -> list[tuple[int, int, int]]:
    """``(ts, x, y)`` of each point of a stored move row, in point order."""
    flat: list[int] = json.loads(row.points or "[]")
    return [(row.ts + flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def pack_points(stamps: list[tuple[int, int, int]]) -> tuple[int, int, str]:
    """``(ts, span, points)`` of a move row holding ``stamps``."""
    first = min(ts for ts, _, _ in stamps)
    flat: list[int] = []
    for ts, x, y in stamps:
        flat.extend((ts - first, x, y))
    return first, max(ts for ts, _, _ in stamps) - first, _dumps(flat)


def move_tail(row: EventRow, stored_items: int) -> EventRow | None:
    """The points of move ``row`` past its first ``stored_items`` (a resent move that grew), as a row.

    Rows are unique on (project, eventId, point index): those points are new, the others duplicates.
    """
    if row.points is None or row.row_count <= stored_items:
        return None
    ts, span, points = pack_points(move_stamps(row)[stored_items:])
    return row._replace(ts=ts, span=span, row_count=row.row_count - stored_items, points=points)


@dataclass(frozen=True)
class Prepared:
    batch: Batch
    dropped: int


def prepare_batch(
    payload: dict[str, Any],
    *,
    project_key: str,
    jwt_sub: str | None,
    user_agent: str | None,
    ip: str | None,
    ip_secret: str,
    now_ms: int,
    seq: int,
) -> Prepared:
    """Apply the storage rules of the contract to a validated payload.

    ``seq`` is the first of ``len(payload["events"])`` storage-order numbers (:class:`SeqClock`).
    """
    session = payload["session"]
    kept = [e for e in payload["events"] if not is_unmasked_input(e)]
    rows: list[EventRow] = []
    seen: dict[str, int] = {}
    items = 0
    for offset, event in enumerate(kept):
        row = event_row(event, session["id"], seq + offset)
        if row is None:
            continue
        items += row.row_count
        if row.event_id not in seen:  # an id repeated inside one batch is stored once (the first)
            seen[row.event_id] = len(rows)
            rows.append(row)
            continue
        earlier = rows[seen[row.event_id]]
        tail = move_tail(row, earlier.row_count) if earlier.type == "move" else None
        if tail is not None:  # the same move resent with more points: its new points join it
            ts, span, points = pack_points(move_stamps(earlier) + move_stamps(tail))
            rows[seen[row.event_id]] = earlier._replace(ts=ts, span=span, row_count=row.row_count, points=points)
    first = payload["events"][0]
    last = max(rows, key=lambda r: (r.ts + r.span, r.seq)) if rows else None
    user = payload.get("user")
    traits = user.get("traits") if user else None
    agent = (user_agent or first["device"].get("ua") or "")[:MAX_USER_AGENT] or None
    device_json = _dumps(first["device"])
    traffic = agent_verdict(agent, device_json)
    return Prepared(
        batch=Batch(
            project_key=project_key,
            external_user_id=jwt_sub or (user["id"] if user else None),
            user_traits_json=_dumps(traits) if traits is not None else None,
            session=SessionRow(
                id=session["id"],
                started_at=js_round(session.get("startedAt", now_ms)),
                last_seen_at=js_round(session.get("lastSeenAt", now_ms)),
                first_path=first["path"],
                user_agent=agent,
                device_json=device_json,
                ip_hash=hash_ip(ip, ip_secret),
                last_path=last.path if last else first["path"],
                last_ts=last.ts + last.span if last else js_round(first["ts"]),
                traffic=traffic.traffic,
                traffic_reason=traffic.reason,
            ),
            events=rows,
            row_count=items,
        ),
        dropped=len(payload["events"]) - len(kept),
    )
