"""Privacy rules applied on the server to every batch, whatever the browser did (issue 24).

- Query strings: removed from every stored path and from a pageview's ``from``/``to``, except the
  parameters named in ``HEAT_PATH_QUERY_ALLOWLIST`` (query strings carry emails and tokens). A
  fragment is removed too, unless ``HEAT_HASH_ROUTES`` keeps it as part of the path (``/#/cart``),
  in which case its own query string follows the same rule.
- Do Not Track: a request with ``DNT: 1`` or ``Sec-GPC: 1`` is stored without user id, traits and
  ip hash (``HEAT_HONOR_DNT = "anonymous"``, the default), dropped (``"drop"``) or stored as sent
  (``"off"``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from werkzeug.datastructures import Headers

DNT_MODES = ("off", "anonymous", "drop")
DNT_DROP_REASON = "do_not_track"
_URL_FIELDS = ("from", "to")  # a pageview's paths


def opted_out(headers: Headers) -> bool:
    """Whether the request asks not to be tracked (``DNT: 1`` or Global Privacy Control)."""
    return headers.get("DNT", "").strip() == "1" or headers.get("Sec-GPC", "").strip() == "1"


def _kept_query(query: str, allowed: frozenset[str]) -> str:
    """The ``name=value`` parts of ``query`` whose (decoded) name is allowed, as sent, in their order."""
    if not allowed:
        return ""
    return "&".join(part for part in query.split("&") if part and unquote_plus(part.split("=", 1)[0]) in allowed)


def _clean_route(route: str, allowed: frozenset[str]) -> str:
    base, mark, query = route.partition("?")
    kept = _kept_query(query, allowed) if mark else ""
    return f"{base}?{kept}" if kept else base


def clean_path(path: str, allowed: frozenset[str], hash_routes: bool) -> str:
    """``path`` without the query parameters that are not ``allowed`` and, unless ``hash_routes``,
    without its fragment."""
    if "?" not in path and "#" not in path:
        return path
    page, mark, fragment = path.partition("#")
    cleaned = _clean_route(page, allowed)
    if mark and hash_routes:
        cleaned += "#" + _clean_route(fragment, allowed)
    return cleaned


def clean_payload(payload: dict[str, Any], allowed: frozenset[str], hash_routes: bool) -> dict[str, Any]:
    """The validated ``payload`` with every event's path and a pageview's ``from``/``to`` cleaned
    (:func:`clean_path`); the payload itself is not changed."""
    events = []
    for event in payload["events"]:
        changed = {
            name: clean_path(event[name], allowed, hash_routes)
            for name in ("path", *_URL_FIELDS)
            if isinstance(event.get(name), str)
        }
        events.append({**event, **changed} if any(event[k] != v for k, v in changed.items()) else event)
    return {**payload, "events": events}


def anonymous(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` without its user (id and traits)."""
    return {key: value for key, value in payload.items() if key != "user"}
