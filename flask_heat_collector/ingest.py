"""Turn a validated ingest payload into the rows to store (pure, no I/O)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .repositories.base import Batch, EventRow, SessionRow

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


def event_rows(event: dict[str, Any], session_id: str) -> list[EventRow]:
    """The stored rows of one event: one per move point, else one."""
    meta = event.get("meta")
    scrubbed = {k: v for k, v in meta.items() if k not in SCRUBBED_META_KEYS} if meta is not None else None
    viewport = event["viewport"]
    vw, vh = viewport["w"], viewport["h"]
    bw, bh = viewport_bucket(meta, vw, vh)
    data = {k: event[k] for k in TYPE_FIELDS if k in event}
    kind = event["type"]
    common: dict[str, Any] = dict(
        event_id=event["eventId"],
        session_id=session_id,
        type=kind,
        path=event["path"],
        selector=event.get("selector"),
        viewport_w=js_round(vw),
        viewport_h=js_round(vh),
        bucket_w=bw,
        bucket_h=bh,
        meta_json=_dumps({"viewport": viewport, "device": event["device"], "meta": scrubbed}),
        data_json=_dumps(data) if data else None,
    )
    ts = event["ts"]
    if kind == "move":
        return [
            EventRow(
                point_index=index,
                ts=js_round(ts + point["tsOffset"]),
                x=js_round(point["x"]),
                y=js_round(point["y"]),
                scroll_depth=None,
                **common,
            )
            for index, point in enumerate(event["points"])
        ]
    x = y = depth = None
    if kind == "click":
        x, y = js_round(event["x"]), js_round(event["y"])
    elif kind == "scroll":
        depth = js_round(event["scrollDepthPct"])
    return [EventRow(point_index=0, ts=js_round(ts), x=x, y=y, scroll_depth=depth, **common)]


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
    create_project: bool,
) -> Prepared:
    """Apply the storage rules of the contract to a validated payload."""
    session = payload["session"]
    kept = [e for e in payload["events"] if not is_unmasked_input(e)]
    rows = [row for event in kept for row in event_rows(event, session["id"])]
    first = payload["events"][0]
    user = payload.get("user")
    traits = user.get("traits") if user else None
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
                user_agent=(user_agent or first["device"].get("ua") or "")[:MAX_USER_AGENT] or None,
                device_json=_dumps(first["device"]),
                ip_hash=hash_ip(ip, ip_secret),
            ),
            events=rows,
            create_project=create_project,
        ),
        dropped=len(payload["events"]) - len(kept),
    )
