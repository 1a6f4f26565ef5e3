"""The JSON shapes of events and sessions, shared by the query API and the export."""

from __future__ import annotations

from typing import Any

from .repositories.base import Event, Session


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "eventId": event.event_id,
        "projectId": event.project_id,
        "sessionId": event.session_id,
        "userId": event.user_id,
        "type": event.type,
        "ts": event.ts,
        "path": event.path,
        "selector": event.selector,
        "x": event.x,
        "y": event.y,
        "scrollDepth": event.scroll_depth,
        "metaJson": event.meta_json,
        "data": event.data,
    }


def session_json(session: Session, external: dict[str, str]) -> dict[str, Any]:
    """``external`` maps internal user ids to the SDK's/JWT's (``externalUserId``)."""
    return {
        "id": session.id,
        "projectId": session.project_id,
        "userId": session.user_id,
        "externalUserId": external.get(session.user_id) if session.user_id else None,
        "startedAt": session.started_at,
        "lastSeenAt": session.last_seen_at,
        "firstPath": session.first_path,
        "userAgent": session.user_agent,
        "deviceJson": session.device_json,
        "ipHash": session.ip_hash,
        "traffic": session.traffic,
        "trafficReason": session.traffic_reason,
    }
