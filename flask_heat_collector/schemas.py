"""Marshmallow schemas for the ingest payload and the query strings.

Numbers must be real JSON numbers and finite; strings and free-form objects
have size caps so that hostile input gets a clear 400, never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from .aggregates import ANCHORS
from .fastload import GiveUp, Loader, NotCompilable, compile_loader
from .page_groups import TEMPLATE_PATTERN
from .signals import SIGNAL_NAMES
from .slices import MAX_SLICE, SLICE_PATTERN
from .traffic import HUMAN, TRAFFIC_CHOICES

EVENT_TYPES = ("click", "move", "scroll", "pageview", "custom", "input", "keyboard")
QUERY_TYPES = ("all", *EVENT_TYPES)
HEATMAP_TYPES = (*QUERY_TYPES, "rageclick", "deadclick", "errorclick")

MAX_ID = 128
MAX_PATH = 1024
MAX_TEXT = 1024
MAX_OBJECT_BYTES = 16_384
MAX_OBJECT_DEPTH = 8
MAX_POINTS = 2000
MAX_COORD = 10_000_000
MAX_TS = 10**14  # year 5138 in ms
MAX_QUERY_TIME = 10**15  # a numeric query `from`/`to` is below this in absolute value
MAX_VIEWPORT_WIDTH = 999_999  # the widest "WxH" bucket a query names


class Number(fields.Field[float]):
    """A finite JSON number (not a bool, not a numeric string) within a range."""

    def __init__(self, *, min_value: float, max_value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value = min_value
        self.max_value = max_value

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError("Not a number.")
        if isinstance(value, float) and not math.isfinite(value):  # an int of any size is finite
            raise ValidationError("Must be a finite number.")
        if not self.min_value <= value <= self.max_value:
            raise ValidationError(f"Must be between {self.min_value} and {self.max_value}.")
        return value


# What json.dumps(value, ensure_ascii=False) uses, built once (json.dumps builds one per call).
_SIZE_ENCODER = json.JSONEncoder(ensure_ascii=False)


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_OBJECT_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _json_object(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object within the depth and size caps, else a ValidationError."""
    if not isinstance(value, dict):
        raise ValidationError("Not an object.")
    if _depth(value) > MAX_OBJECT_DEPTH:
        raise ValidationError(f"Nested deeper than {MAX_OBJECT_DEPTH} levels.")
    if len(_SIZE_ENCODER.encode(value).encode("utf-8", "surrogatepass")) > MAX_OBJECT_BYTES:
        raise ValidationError(f"Larger than {MAX_OBJECT_BYTES} bytes.")
    return value


class JsonObject(fields.Field[dict[str, Any]]):
    """A free-form JSON object, capped in depth and encoded size."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        return _json_object(value)


def _text(max_len: int, *, required: bool = False) -> fields.String:
    return fields.String(required=required, validate=validate.Length(max=max_len))


def _ident(*, required: bool = True) -> fields.String:
    return fields.String(required=required, validate=validate.Length(min=1, max=MAX_ID))


def _coord(*, required: bool = True) -> Number:
    return Number(required=required, min_value=-MAX_COORD, max_value=MAX_COORD)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


class SdkSchema(_Base):
    name = _text(128)
    version = _text(64)


class AppSchema(_Base):
    name = _text(128)
    version = _text(64)
    env = _text(64)


class SessionSchema(_Base):
    id = _ident()
    startedAt = Number(min_value=0, max_value=MAX_TS)
    lastSeenAt = Number(min_value=0, max_value=MAX_TS)


class UserSchema(_Base):
    id = _ident()
    traits = JsonObject()


class ViewportSchema(_Base):
    w = Number(required=True, min_value=0, max_value=100_000)
    h = Number(required=True, min_value=0, max_value=100_000)
    dpr = Number(min_value=0, max_value=100)


class DeviceSchema(_Base):
    ua = _text(MAX_TEXT)
    platform = _text(128)
    language = _text(64)


class PointSchema(_Base):
    x = _coord()
    y = _coord()
    tsOffset = Number(required=True, min_value=-86_400_000, max_value=86_400_000)


class EventBaseSchema(_Base):
    eventId = _ident()
    sessionId = _ident()
    ts = Number(required=True, min_value=0, max_value=MAX_TS)
    path = fields.String(required=True, validate=validate.Length(max=MAX_PATH))
    viewport = fields.Nested(ViewportSchema, required=True)
    device = fields.Nested(DeviceSchema, required=True)
    meta = JsonObject()
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))


class ClickSchema(EventBaseSchema):
    x = _coord()
    y = _coord()
    selector = _text(MAX_TEXT)
    button = Number(min_value=0, max_value=32)


class MoveSchema(EventBaseSchema):
    points = fields.List(fields.Nested(PointSchema), required=True, validate=validate.Length(max=MAX_POINTS))


class ScrollSchema(EventBaseSchema):
    scrollY = Number(required=True, min_value=-MAX_COORD, max_value=MAX_COORD)
    scrollDepthPct = Number(required=True, min_value=0, max_value=10_000)


class PageviewSchema(EventBaseSchema):
    to = fields.String(required=True, validate=validate.Length(max=MAX_PATH))
    from_ = fields.String(data_key="from", attribute="from", validate=validate.Length(max=MAX_PATH))


class CustomSchema(EventBaseSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=256))
    props = JsonObject()


class InputSchema(EventBaseSchema):
    action = fields.String(required=True, validate=validate.OneOf(("focus", "blur", "change")))
    selector = _text(MAX_TEXT)
    inputType = _text(64)
    length = Number(min_value=0, max_value=10_000_000)
    masked = _text(100_000)


class KeyboardSchema(EventBaseSchema):
    category = fields.String(
        required=True, validate=validate.OneOf(("navigation", "editing", "modifier", "system", "other"))
    )


EVENT_SCHEMAS: dict[str, Schema] = {
    "click": ClickSchema(),
    "move": MoveSchema(),
    "scroll": ScrollSchema(),
    "pageview": PageviewSchema(),
    "custom": CustomSchema(),
    "input": InputSchema(),
    "keyboard": KeyboardSchema(),
}


class EventField(fields.Field[dict[str, Any]]):
    """One event, validated by the schema of its ``type``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValidationError("Not an object.")
        kind = value.get("type")
        if not isinstance(kind, str) or kind not in EVENT_SCHEMAS:
            raise ValidationError({"type": [f"Must be one of: {', '.join(EVENT_TYPES)}."]})
        result: dict[str, Any] = EVENT_SCHEMAS[kind].load(value)
        return result


class IngestSchema(_Base):
    """The body of ``POST /ingest``; the batch size cap comes from the app config."""

    sdk = fields.Nested(SdkSchema)
    app = fields.Nested(AppSchema)
    session = fields.Nested(SessionSchema, required=True)
    user = fields.Nested(UserSchema)
    events = fields.List(EventField(), required=True)

    def __init__(self, max_events: int) -> None:
        super().__init__()
        self.max_events = max_events
        self._fast = _compile_ingest(self)

    @pre_load
    def _cap_first(self, data: Any, **kwargs: Any) -> Any:
        """Too many events: one short error before any item is read (cost bounded by the cap)."""
        events = data.get("events") if isinstance(data, dict) else None
        if isinstance(events, list) and len(events) > self.max_events:
            message = f"Must hold 1 to {self.max_events} events; this batch has {len(events)}."
            raise ValidationError({"events": [message]})
        return data

    @validates_schema(skip_on_field_errors=False)
    def _batch_size(self, data: dict[str, Any], **kwargs: Any) -> None:
        events = data.get("events")
        if events is not None and not 1 <= len(events) <= self.max_events:
            raise ValidationError(f"Must hold 1 to {self.max_events} events.", "events")

    def load_payload(self, data: Any) -> dict[str, Any]:
        """``self.load(data)``: same result, same errors; a valid batch skips marshmallow's machinery."""
        self._cap_first(data)
        if self._fast is not None:
            try:
                result: dict[str, Any] = self._fast(data)
                if 1 <= len(result["events"]) <= self.max_events:
                    return result
            except Exception:  # noqa: BLE001 - anything unusual is marshmallow's to judge
                pass
        loaded: dict[str, Any] = self.load(data)
        return loaded


def _fast_number(field: fields.Field[Any]) -> Loader:
    assert isinstance(field, Number)
    low, high = field.min_value, field.max_value
    if not (math.isfinite(low) and math.isfinite(high)):
        raise NotCompilable(repr(field))

    def load(value: Any) -> Any:
        kind = type(value)
        if (kind is int or kind is float) and low <= value <= high:
            return value
        raise GiveUp

    return load


def _fast_json_object(_field: fields.Field[Any]) -> Loader:
    def load(value: Any) -> Any:
        try:
            return _json_object(value)
        except ValidationError as exc:
            raise GiveUp from exc

    return load


def _fast_event(_field: fields.Field[Any]) -> Loader:
    loaders = {kind: compile_loader(schema, _FAST_FIELDS) for kind, schema in EVENT_SCHEMAS.items()}

    def load(value: Any) -> Any:
        kind = value.get("type") if type(value) is dict else None
        loader = loaders.get(kind) if type(kind) is str else None
        if loader is None:
            raise GiveUp
        return loader(value)

    return load


_FAST_FIELDS: dict[type, Callable[[fields.Field[Any]], Loader]] = {
    Number: _fast_number,
    JsonObject: _fast_json_object,
    EventField: _fast_event,
}


def _compile_ingest(schema: IngestSchema) -> Loader | None:
    """The fast loader of ``schema`` (its batch-size hooks are re-checked by the caller)."""
    try:
        return compile_loader(schema, _FAST_FIELDS, allowed_hooks=frozenset({"_cap_first", "_batch_size"}))
    except NotCompilable:
        return None


def _limit(default: int, maximum: int) -> fields.Integer:
    return fields.Integer(load_default=default, validate=validate.Range(min=1, max=maximum))


def _offset() -> fields.Integer:
    return fields.Integer(load_default=0, validate=validate.Range(min=0, max=10_000_000))


def _path(**metadata: str) -> fields.String:
    return fields.String(validate=validate.Length(max=MAX_PATH), metadata=metadata)


def _group() -> fields.String:
    """A page group's template (page_groups.py), in place of ``path``; the view checks its syntax."""
    return fields.String(
        validate=validate.Length(max=MAX_PATH),
        metadata={
            "description": "a route template such as /product/:id (docs/api.md, page groups), in place of path",
            "pattern": TEMPLATE_PATTERN,  # stated, not enforced here: the view answers invalid_group
        },
    )


def _type() -> fields.String:
    return fields.String(validate=validate.OneOf(QUERY_TYPES))


def _viewport_bucket(**metadata: str) -> fields.String:
    return fields.String(validate=validate.Regexp(r"^\d{1,6}x\d{1,6}$"), metadata=metadata)


def _viewport_width(description: str) -> fields.Integer:
    return fields.Integer(validate=validate.Range(min=1, max=MAX_VIEWPORT_WIDTH), metadata={"description": description})


def _traffic() -> fields.String:
    return fields.String(
        load_default=HUMAN,
        validate=validate.OneOf(TRAFFIC_CHOICES),
        metadata={"description": "the sessions' traffic class (docs/traffic.md): human (default), bot or all"},
    )


class _FrameQuerySchema(_Base):
    """The frame of a map: a bucket, or the most common bucket of a width; the width band or all."""

    path = _path()
    group = _group()
    viewportBucket = _viewport_bucket()
    viewportWidth = _viewport_width("the frame is the most common bucket of this width")
    viewports = fields.String(load_default="width", validate=validate.OneOf(("width", "all")))


class HeatmapQuerySchema(_FrameQuerySchema):
    traffic = _traffic()
    type = fields.String(validate=validate.OneOf(HEATMAP_TYPES))
    resolution = fields.Integer(load_default=128, validate=validate.Range(min=8, max=1024))
    anchor = fields.String(
        load_default="left",
        validate=validate.OneOf(ANCHORS),
        metadata={
            "description": "where rows of another exact width w go on the frame of width F: "
            "left x, center x + (F - w) / 2, scale x * F / w"
        },
    )


class ScrollmapQuerySchema(_FrameQuerySchema):
    traffic = _traffic()


class ElementsQuerySchema(_FrameQuerySchema):
    """Clicked elements, counted in the width band of the map (the band parameters of the heatmap)."""

    traffic = _traffic()
    type = fields.String(load_default="click", validate=validate.OneOf(("click", "rageclick")))
    limit = _limit(50, 500)


class CompareQuerySchema(_FrameQuerySchema):
    """Two slices of one report (docs/compare.md); path, group and the band apply to both sides
    unless a side gives its own."""

    report = fields.String(required=True, validate=validate.OneOf(("heatmap", "elements", "scrollmap")))
    traffic = _traffic()
    a = fields.String(
        required=True,
        metadata={
            "description": "side a: ';'-separated key=value items (from, to, path, group, viewportWidth, "
            "viewportBucket, segment=custom:<event>.<prop>=<value>), possibly none; docs/compare.md",
            "pattern": SLICE_PATTERN,  # stated, not enforced here: the view answers invalid_slice
            "maxLength": MAX_SLICE,
        },
    )
    b = fields.String(
        required=True,
        metadata={"description": "side b, as a", "pattern": SLICE_PATTERN, "maxLength": MAX_SLICE},
    )
    type = fields.String(load_default="click", validate=validate.OneOf(HEATMAP_TYPES))
    resolution = fields.Integer(load_default=128, validate=validate.Range(min=8, max=1024))
    limit = _limit(50, 500)


class PathsQuerySchema(_Base):
    traffic = _traffic()
    q = _path(description="path prefix")
    group = _group()
    groups = fields.Boolean(
        load_default=False,
        truthy={"true", "1"},
        falsy={"false", "0"},
        metadata={"description": "also list the groups of HEAT_PAGE_GROUPS with their paths, events and sessions"},
    )
    limit = _limit(100, 500)


class PageGroupPreviewQuerySchema(_Base):
    """The paths a template would cover (``GET /page-groups/preview``)."""

    traffic = _traffic()
    template = fields.String(
        required=True,
        validate=validate.Length(max=MAX_PATH),
        metadata={
            "description": "a route template such as /product/:id (docs/api.md, page groups)",
            "pattern": TEMPLATE_PATTERN,
        },
    )
    limit = _limit(100, 500)


class EventsQuerySchema(_Base):
    traffic = _traffic()
    path = _path()
    group = _group()
    type = _type()
    limit = _limit(200, 1000)
    offset = _offset()


class SessionsQuerySchema(_Base):
    traffic = _traffic()
    userId = fields.String(
        validate=validate.Length(max=MAX_ID),
        metadata={"description": "the SDK's or JWT's user id, or the internal one"},
    )
    path = _path(description="the session's first path (firstPath); see visitedPath for any visited path")
    order = fields.String(load_default="asc", validate=validate.OneOf(("asc", "desc")))
    signal = fields.String(
        validate=validate.OneOf(SIGNAL_NAMES),
        metadata={"description": "only sessions with at least one settled signal of this kind"},
    )
    visitedPath = _path(
        description="only sessions with an event (any type) on this path whose time (a move: one of its points) "
        "lies in from..to, and in the width band when one is given; `path` stays the first path"
    )
    viewportBucket = _viewport_bucket(
        description="WxH: only sessions with an event in the width band W (rows whose bucket width is W; H is not "
        "used), on visitedPath when given, in from..to; wins over viewportWidth"
    )
    viewportWidth = _viewport_width(
        "only sessions with an event in this width band (rows whose bucket width is this), on visitedPath when "
        "given, in from..to"
    )
    limit = _limit(50, 200)
    offset = _offset()


class SessionDetailQuerySchema(_Base):
    type = _type()
    limit = _limit(200, 500)
    offset = _offset()
