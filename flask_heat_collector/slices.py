"""The slice syntax of ``GET /compare`` (docs/compare.md): what one side of a comparison selects.

A side is ``key=value`` items separated by ``;``; only the first ``=`` of an item splits it, so a
value may hold ``=`` and ``:`` (``group=/product/:id``, ``segment=custom:experiment.variant=B``) but
never ``;``. Backend-free, and free of the rest of the package but page groups, so that the query
schemas can state the syntax as a pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .page_groups import TEMPLATE_PATTERN, InvalidTemplate, Template, parse

SLICE_KEYS = ("from", "to", "path", "group", "viewportWidth", "viewportBucket", "segment")
SEGMENT_PREFIX = "custom:"
MAX_SLICE = 4096  # characters of one side's text
MAX_PATH = 1024  # as long as a stored path may be (schemas.MAX_PATH)
MAX_VIEWPORT_WIDTH = 999_999  # the widest "WxH" bucket a query names (schemas.MAX_VIEWPORT_WIDTH)


class InvalidSlice(ValueError):
    """A side's text breaks the slice syntax; ``key`` names the item at fault (``None``: the whole text)."""

    def __init__(self, reason: str, key: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.key = reason, key


@dataclass(frozen=True)
class Segment:
    """The sessions that sent a custom event named ``event`` whose ``props[prop]`` is ``value``."""

    event: str
    prop: str
    value: str

    @property
    def text(self) -> str:
        return f"{SEGMENT_PREFIX}{self.event}.{self.prop}={self.value}"


_TIME = re.compile(r"-?[0-9]{1,15}")
_WIDTH = re.compile(r"[1-9][0-9]{0,5}")
_BUCKET = re.compile(r"[0-9]{1,6}x[0-9]{1,6}")
_TEMPLATE_ITEM = TEMPLATE_PATTERN[1:-1].replace("[^/?*", "[^;/?*")  # a template holding no ';'
_ITEM = (
    rf"(?:(?:from|to)=-?[0-9]{{1,15}}|path=[^;]{{1,{MAX_PATH}}}|group={_TEMPLATE_ITEM}"
    r"|viewportWidth=[1-9][0-9]{0,5}|viewportBucket=[0-9]{1,6}x[0-9]{1,6}|segment=custom:[^;=]+\.[^;=.]+=[^;]+)"
)
SLICE_PATTERN = (
    rf"^(?![\s\S]*(?:^|;)({'|'.join(SLICE_KEYS)})=[\s\S]*;\1=)"  # no key twice
    r"(?![\s\S]*(?:^|;)(?:path=[\s\S]*;group|group=[\s\S]*;path)=)"  # not both path and group
    rf"(?:{_ITEM}(?:;{_ITEM})*)?$"
)
"""The slice syntax as one regular expression (ECMA 262 and Python alike) for the OpenAPI document;
:func:`parse_slice` decides, and says what is wrong."""


@dataclass(frozen=True)
class SliceItems:
    """What one side gives (``None``: not given, the shared parameter applies)."""

    ts_from: int | None = None
    ts_to: int | None = None
    path: str | None = None
    group: Template | None = None
    viewport_width: int | None = None
    viewport_bucket: str | None = None
    segment: Segment | None = None

    @property
    def own_paths(self) -> bool:
        return self.path is not None or self.group is not None

    @property
    def own_band(self) -> bool:
        return self.viewport_width is not None or self.viewport_bucket is not None


def _items(text: str) -> dict[str, str]:
    if len(text) > MAX_SLICE:
        raise InvalidSlice(f"a slice is at most {MAX_SLICE} characters")
    found: dict[str, str] = {}
    for item in text.split(";") if text else ():
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidSlice(f"item {item[:40]!r} is not key=value", key[:40] or None)
        if key not in SLICE_KEYS:
            raise InvalidSlice(f"unknown key {key[:40]!r} (one of {', '.join(SLICE_KEYS)})", key[:40])
        if key in found:
            raise InvalidSlice(f"'{key}' is given twice", key)
        if not value:
            raise InvalidSlice(f"'{key}' has no value", key)
        found[key] = value
    if "path" in found and "group" in found:
        raise InvalidSlice("give 'path' or 'group', not both", "group")
    return found


def _checked(items: dict[str, str], key: str, rule: re.Pattern[str], what: str) -> str | None:
    value = items.get(key)
    if value is not None and not rule.fullmatch(value):
        raise InvalidSlice(f"'{key}' must be {what}", key)
    return value


def parse_slice(text: str) -> SliceItems:
    """A side: ``key=value`` items separated by ``;`` (the empty text: no items), only the first
    ``=`` of an item splitting it, so a value may hold ``=`` and ``:`` but never ``;``. Keys are
    :data:`SLICE_KEYS`, each at most once, not both ``path`` and ``group``; ``from`` and ``to`` are
    unix milliseconds."""
    items = _items(text)
    ts_from = _checked(items, "from", _TIME, "unix milliseconds (an integer)")
    ts_to = _checked(items, "to", _TIME, "unix milliseconds (an integer)")
    if ts_from is not None and ts_to is not None and int(ts_from) > int(ts_to):
        raise InvalidSlice("'from' is after 'to'", "from")
    path = items.get("path")
    if path is not None and len(path) > MAX_PATH:
        raise InvalidSlice(f"'path' is at most {MAX_PATH} characters", "path")
    group = None
    if "group" in items:
        try:
            group = parse(items["group"])
        except InvalidTemplate as exc:
            raise InvalidSlice(f"invalid page group template: {exc}", "group") from exc
    width = _checked(items, "viewportWidth", _WIDTH, f"an integer from 1 to {MAX_VIEWPORT_WIDTH}")
    return SliceItems(
        ts_from=None if ts_from is None else int(ts_from),
        ts_to=None if ts_to is None else int(ts_to),
        path=path,
        group=group,
        viewport_width=None if width is None else int(width),
        viewport_bucket=_checked(items, "viewportBucket", _BUCKET, "WxH, such as 1280x720"),
        segment=parse_segment(items["segment"]) if "segment" in items else None,
    )


def parse_segment(text: str) -> Segment:
    """``custom:<event>.<prop>=<value>``: the event name is everything up to the last ``.`` before
    the first ``=`` (it may hold dots), the property the rest; the value is everything after that
    ``=`` (it may hold ``=``). Event, property and value are non-empty."""
    if not text.startswith(SEGMENT_PREFIX):
        raise InvalidSlice(f"a segment is {SEGMENT_PREFIX}<event>.<prop>=<value>", "segment")
    name, sep, value = text[len(SEGMENT_PREFIX) :].partition("=")
    event, dot, prop = name.rpartition(".")
    if not sep or not dot or not event or not prop or not value:
        raise InvalidSlice(f"a segment is {SEGMENT_PREFIX}<event>.<prop>=<value>, each part non-empty", "segment")
    return Segment(event, prop, value)
