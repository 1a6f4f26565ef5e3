"""The storage contract: the Repository ABC and the plain records it speaks in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .session_sets import SessionSet

if TYPE_CHECKING:
    from ..rageclicks import RageRule
    from ..signals import Signal, SignalRules
    from ..traffic import TrafficRules

T = TypeVar("T")
# (project_id, path_key, day, type, bucket_w, bucket_h, view_w)
AggregateKeyDay = tuple[str, int, int, str, int, int, int]
ReportKeyDay = tuple[str, int, int, int]  # project, path key, day, band (report_pieces)
# (types, bucket_w, view_w): the aggregate pieces to read with their cells (None: of every width)
Blobs = tuple[tuple[str, ...], int | None, int | None]


LAYOUT = 2
"""The storage layout this version writes; layout 1 stored one row (document) per move point."""


@dataclass(frozen=True)
class Migration:
    """What one ``migrate()`` did, for the migrate commands to say.

    ``created``: tables (collections) made; ``new`` when none existed before (a new database).
    ``added``: columns and indexes added to tables that existed. ``from_layout``: the older layout
    whose data was moved forward.
    """

    noun: str = "table"  # what ``created`` holds: "table" or "collection"
    new: bool = False
    created: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    from_layout: int | None = None
    known: bool = True  # False when the database would not list what it had (a user without the right)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.added or self.from_layout is not None)

    def describe(self) -> str:
        """One sentence: created / migrated from layout N / updated / already up to date."""
        if not self.known:
            moved = f"migrated the database from layout {self.from_layout}; " if self.from_layout else ""
            return f"{moved}indexes ensured (this user may not list what existed, so what was new is not known)"
        if not self.changed:
            return f"database already up to date (layout {LAYOUT}), nothing to do"
        created = f"{len(self.created)} {self.noun}{'s' if len(self.created) != 1 else ''} ({', '.join(self.created)})"
        if self.new:
            return f"created a new database (layout {LAYOUT}): {created}"
        parts = [f"created {created}"] if self.created else []
        if self.added:
            parts.append(f"added {', '.join(self.added)}")
        if self.from_layout is not None:
            head = f"migrated the database from layout {self.from_layout} to layout {LAYOUT}"
            return head + (f" ({'; '.join(parts)})" if parts else "")
        return f"updated the database to layout {LAYOUT}: {'; '.join(parts)}"


class EventRow(NamedTuple):
    """One SDK event as stored: its JSON once, a move's points packed in ``points``.

    ``project_id`` and ``user_id`` say where the row is stored: set on rows read back, left at
    their defaults on rows made by ingest (the database resolves both when it stores them).
    """

    event_id: str
    seq: int  # storage order: later batches and later events of a batch get larger values
    session_id: str
    type: str
    ts: int  # the earliest item's ts (a move's points may precede the event's own ts)
    span: int  # latest item ts - ts (0 but for moves)
    path: str
    path_key: int  # fixed-size hash of path, the key of every path index
    selector: str | None
    x: int | None
    y: int | None
    scroll_depth: int | None
    bucket_w: int
    bucket_h: int
    view_w: int  # the exact viewport width (rounded), where bucket_w is its 100 px bucket
    row_count: int  # rows this event answers as: its points for a move, else 1
    points: str | None  # a move's points: JSON [dt, x, y, dt, x, y, ...] in point order, dt = ts offset
    meta_json: str
    data_json: str | None
    project_id: str = ""
    user_id: str | None = None  # the internal user id


STORED_FIELDS = EventRow._fields  # what a read returns, in order
# Moves lasting longer than this are also kept in the long-move index, one entry per UTC day their
# rows fall on: a scan from a time reads this much before it, plus the long moves crossing it.
LONG_MOVE_MS = 60_000
_DAY_MS = 86_400_000


def long_move_days(ts: int, span: int) -> range:
    """The UTC days of a move's long-move index entries: every day its rows fall on, none when short."""
    return range(ts // _DAY_MS, (ts + span) // _DAY_MS + 1) if span > LONG_MOVE_MS else range(0)


LOCATION_FIELDS = ("project_id", "user_id")
ROW_FIELDS = STORED_FIELDS[: -len(LOCATION_FIELDS)]  # what ingest stores per event, in order


class AggregateRow(NamedTuple):
    """One piece of a heatmap aggregate: what some rows of one day, path, type, bucket and exact
    viewport width add up to (cells binned on ``view_w``).

    Several pieces may exist for one key (one per ingested batch until compacted); they are summed.
    """

    path_key: int
    day: int
    type: str
    bucket_w: int
    bucket_h: int
    view_w: int
    part: int
    n: int
    first_seq: int | None
    max_y: int | None
    cells: str | None  # JSON [cell, count, ...] at the aggregate resolution
    depths: str | None  # JSON [depth, count, ...] of scroll rows


class ReportPiece(NamedTuple):
    """One piece of report data of a key-day (path, day, band).

    ``session_id`` names the one session of a fresh piece (``sessions`` is then ``None``); a merged
    piece has ``session_id`` ``None`` and its sessions' ordinals in ``sessions``. ``selectors`` is JSON
    ``[[selector, clicks, bitmap or null], ...]`` (``null``: the fresh piece's own session); ``scroll``
    JSON ``{"k": deepest level, ...}`` (fresh) or ``{"r": [[level, bitmap], ...], ...}`` (merged), both
    with ``"H"`` and ``"h"``: ``[[pixels, rows], ...]`` of the page and viewport heights of scroll rows.
    """

    path_key: int
    day: int
    bucket_w: int
    part: int
    path: str
    n_rows: int
    last_ts: int | None
    session_id: str | None
    sessions: str | None  # base64 of a serialized Roaring bitmap
    selectors: str | None
    scroll: str | None  # JSON: reach levels (fresh: the session's deepest, merged: bitmaps), page and viewport heights


@dataclass(frozen=True)
class SessionFields:
    """What a session holds from its batches, as ingest writes it and reads return it."""

    id: str
    started_at: int
    last_seen_at: int
    first_path: str
    user_agent: str | None
    device_json: str | None
    ip_hash: str | None


@dataclass(frozen=True)
class SessionRow(SessionFields):
    """The session fields written when a batch arrives."""

    last_path: str
    last_ts: int
    traffic: str = "human"  # the class the batch's agent gives the session (traffic.py); kept by later batches
    traffic_reason: str | None = None


@dataclass(frozen=True)
class Batch:
    """Everything one ingest request stores, ready for the database."""

    project_key: str
    external_user_id: str | None
    user_traits_json: str | None
    session: SessionRow
    events: list[EventRow]
    row_count: int  # rows the batch's events answer as, repeated ids included (accepted + duplicates)

    @property
    def span(self) -> int:
        """The longest move of the batch, in ms from its first to its last point."""
        return max((row.span for row in self.events), default=0)


@dataclass(frozen=True)
class IngestResult:
    project_id: str
    accepted: int
    duplicates: int
    erased_user: bool = False  # the batch's user was erased: nothing of it was stored
    traffic: str = "human"  # the class of the session its rows were stored under (traffic.py)
    # The session's stored clicks may break a behaviour rule (traffic.py), so the caller decides its
    # class again (Repository.classify_sessions); the SQL backends look in the batch's own
    # transaction and say False for the usual human session, MongoDB leaves it to the caller.
    bot_suspect: bool = True


PathSet = str | tuple[str, ...] | None
"""Which paths a read covers: one path, any of several (a page group), or every path (``None``)."""


def path_in(path: str, wanted: PathSet) -> bool:
    """Whether ``path`` is one of the paths ``wanted`` covers."""
    if wanted is None:
        return True
    return path == wanted if isinstance(wanted, str) else path in wanted


@dataclass(frozen=True)
class EventFilter:
    """Rows of one project, optionally narrowed by path, time and types (``None`` = all types).

    ``paths``: any of these paths (a page group resolved to the paths it matches), in place of ``path``.
    """

    project_id: str
    path: str | None = None
    ts_from: int | None = None
    ts_to: int | None = None
    types: tuple[str, ...] | None = None
    other_width: int | None = None  # only rows whose exact viewport width (view_w) is not this
    paths: tuple[str, ...] | None = None
    traffic: str = "human"  # rows of sessions of this class (traffic.py), or "all"

    @property
    def path_set(self) -> PathSet:
        """The paths of the filter as the readers take them."""
        return self.paths if self.paths is not None else self.path


@dataclass(frozen=True)
class Event:
    id: str
    event_id: str
    project_id: str
    session_id: str
    user_id: str | None
    type: str
    ts: int
    path: str
    selector: str | None
    x: int | None
    y: int | None
    scroll_depth: int | None
    meta_json: str
    data: dict[str, Any] | None


@dataclass(frozen=True)
class Session(SessionFields):
    """A stored session, with the project and the (internal) user it belongs to."""

    project_id: str
    user_id: str | None
    traffic: str = "human"
    traffic_reason: str | None = None


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    user_id: str | None
    started_at: int
    last_seen_at: int
    first_path: str
    event_count: int
    last_path: str | None
    signals: dict[str, int] = field(default_factory=dict)  # settled signals by kind (rage clicks as ``rage``)


@dataclass(frozen=True)
class SessionQuery:
    project_id: str
    started_from: int | None = None
    last_seen_to: int | None = None
    user_id: str | None = None  # the SDK's or JWT's user id, or the internal one
    first_path: str | None = None
    descending: bool = False
    limit: int = 50
    offset: int = 0
    signal: str | None = None  # only sessions with a settled signal of this kind (signals.SIGNAL_NAMES)
    among: SessionSet | None = None  # only these sessions (visitedPath and the width band: visits.py)
    traffic: str = "human"  # sessions of this class (traffic.py), or "all"


class AggregateKey(NamedTuple):
    """One key-day of the heatmap aggregates of a project."""

    path_key: int
    type: str
    bucket_w: int
    bucket_h: int
    view_w: int
    day: int


@dataclass(frozen=True)
class Erasure:
    """What to erase in one project: a user's data, a session, or everything before a time.

    ``user`` is the SDK's/JWT's user id or the internal one; ``before`` unix ms. Given together, the
    conditions all apply.
    """

    project_id: str
    user: str | None = None
    session_id: str | None = None
    before: int | None = None

    def __post_init__(self) -> None:
        if self.user is None and self.session_id is None and self.before is None:
            raise ValueError("an erasure needs a user, a session or a time")

    @property
    def whole_user(self) -> bool:
        """A user's erasure with no other condition: the user is then remembered as erased."""
        return self.user is not None and self.session_id is None and self.before is None


@dataclass(frozen=True)
class ErasedCounts:
    """What an erasure found (dry run) or removed: users, sessions and event rows (a move: its points)."""

    users: int
    sessions: int
    events: int
    verified: bool = False  # a second look found nothing of it left


@dataclass(frozen=True)
class UserData:
    """A user as stored (every internal id the SDK/JWT id or internal id names), with the sessions
    they sent events in.

    An event is the user's whose batch sent it; one sent without a user is the user's of its session
    (``owned``: the sessions whose user, the last one a batch named, is this one). A session row holds
    what its first batch said (agent, device, IP hash): ``foreign`` are the sessions whose row another
    user's batch made.
    """

    users: list[dict[str, Any]]  # {id, externalId, traits, createdAt}
    sessions: list[Session]
    owned: tuple[str, ...] = ()
    foreign: frozenset[str] = frozenset()

    @property
    def user_ids(self) -> list[str]:
        return sorted(str(u["id"]) for u in self.users)


@dataclass(frozen=True)
class ClassifyCounts:
    """What ``classify_sessions`` did: sessions decided, and those that became bots or humans."""

    sessions: int = 0
    to_bot: int = 0
    to_human: int = 0


@dataclass(frozen=True)
class PurgeCounts:
    """What a retention purge found (dry run) or removed: event rows (a move: its points), sessions,
    users and heatmap aggregate pieces."""

    events: int = 0
    sessions: int = 0
    users: int = 0
    aggregates: int = 0

    def __add__(self, other: PurgeCounts) -> PurgeCounts:
        return PurgeCounts(
            self.events + other.events,
            self.sessions + other.sessions,
            self.users + other.users,
            self.aggregates + other.aggregates,
        )


@dataclass(frozen=True)
class Project:
    id: str
    key: str
    name: str
    created_at: int


class PathTotal(NamedTuple):
    """What the events of one path wholly inside a range add up to."""

    path: str
    rows: int  # a move counts its points
    sessions: int
    last_seen: int  # the latest row's ts


@dataclass(frozen=True)
class Scan:
    """What :meth:`Reader.scan` reads: the events of ``flt`` (project, path, types; ``ts`` at most
    ``flt.ts_to``) with ``ts`` at least ``ts_low``, of one session when ``session_id`` is given.

    ``light`` reads neither the JSON columns nor path and selector (they are ``None``); ``text``
    reads path and selector even then; ``points=False`` does not read a move's points either.
    """

    flt: EventFilter
    ts_low: int | None
    session_id: str | None = None
    light: bool = False
    text: bool = False
    points: bool = True


@dataclass
class ReadTally:
    """The stored events the readers of one repository returned, and the move points read with them:
    a test hook that bounds a query's cost by what it reads, not by its time."""

    events: int = 0
    points: int = 0

    def add(self, rows: list[EventRow]) -> list[EventRow]:
        self.events += len(rows)
        self.points += sum(row.row_count for row in rows if row.points is not None)
        return rows


class Reader(ABC):
    """Reads that see one snapshot of the database (one transaction where the backend has them)."""

    @abstractmethod
    def scan(self, what: Scan, after: tuple[int, int] | None, limit: int) -> list[EventRow]:
        """At most ``limit`` events of ``what`` in ``(ts, seq)`` order, after the key ``after``."""

    @abstractmethod
    def fetch(self, project_id: str, event_ids: list[str]) -> list[EventRow]:
        """The stored events of these ids (in no particular order)."""

    @abstractmethod
    def aggregates(
        self, project_id: str, path: PathSet, days: tuple[int, int], *, blobs: Blobs | None = None
    ) -> list[AggregateRow]:
        """Aggregate pieces of the days ``days[0]..days[1]`` (of ``path``: one path, any of several, or
        every path for ``None``); with ``blobs=(types, bucket_w, view_w)`` only the pieces of those
        types, bucket width and exact width (``None``: any), with their cells and depths (else without
        them)."""

    @abstractmethod
    def path_totals(self, project_id: str, ts_from: int | None, ts_to: int | None) -> list[PathTotal]:
        """Per path, the events whose rows all lie in ``ts_from..ts_to`` (``None``: open), grouped by
        the database."""

    @abstractmethod
    def session_paths(
        self, project_id: str, ts_from: int | None, ts_to: int | None, session_ids: list[str]
    ) -> set[tuple[str, str]]:
        """``(path, session id)`` of these sessions' events whose rows all lie in the range."""

    @abstractmethod
    def deepest_scrolls(self, flt: EventFilter, width: int | None) -> list[float]:
        """Each session's deepest scroll row of ``flt`` (``ts_from..ts_to``; of bucket width ``width``
        when given), as a percent of the page (a depth above 100 is hundredths of a percent)."""

    @abstractmethod
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
        """Report pieces of the days ``days[0]..days[1]`` (of ``path``: one path, any of several, or every
        path for ``None``; of one band width when given,
        the per-band pieces when not, the all-band ones for ``report_pieces.ALL_WIDTHS``); with
        ``selectors`` / ``scroll`` that data too (else ``None``)."""

    @abstractmethod
    def session_ordinals(self, project_id: str, session_ids: set[str]) -> dict[str, int]:
        """The ordinals of those of these sessions that have one."""

    @abstractmethod
    def rage_clicks(self, flt: EventFilter) -> list[EventRow]:
        """The settled rage clicks of ``flt`` (project, path, ``ts_from..ts_to``) in ``(ts, seq)`` order, as
        light rows (no JSON)."""

    @abstractmethod
    def signals(self, flt: EventFilter, kind: str) -> list[Signal]:
        """The settled signals of one kind (signals.py) of ``flt`` (project, path, ``ts_from..ts_to``) in
        ``(ts, seq)`` order."""

    def signal_maps(
        self, project_id: str, path: PathSet, days: tuple[int, int], kind: str
    ) -> list[AggregateRow] | None:
        """The dead-click or error-click map pieces (signal_maps.py: ``type`` the kind) of the human
        sessions' signals on these whole days; ``None`` when this reader has none (its answers come
        from the signal rows)."""
        return None

    @abstractmethod
    def signal_path_counts(self, flt: EventFilter) -> dict[tuple[str, str], int]:
        """``{(path, kind): n}`` of the settled signals of ``flt``'s range (rage clicks as kind ``rage``),
        grouped by the database."""

    @abstractmethod
    def signal_selector_counts(self, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
        """``{(selector, kind): n}`` of the settled signals of ``flt`` that have a selector (of bucket
        width ``width`` when given), grouped by the database."""

    @abstractmethod
    def long_moves(self, what: Scan, before: int, reaching: int) -> list[EventRow]:
        """The events of ``what`` in the long-move index that start before ``before`` and have rows
        at or after ``reaching`` (found through the index's entries of ``reaching``'s day), in
        ``(ts, seq)`` order; ``what.ts_low`` is not used."""

    @abstractmethod
    def max_span(self, project_id: str) -> int:
        """The longest move ever stored in the project (ms): how far before a range its points may start."""

    @abstractmethod
    def project_found(self, project_id: str) -> bool:
        """Whether a project with this id exists (a lookup by primary key)."""

    @abstractmethod
    def last_item_ts(self, project_id: str) -> int | None:
        """The latest item ts of the project's stored rows (a move: its latest point), as the report
        pieces of its latest UTC day hold it: never a scan of events. ``None`` when it has none."""


class Repository(ABC):
    """Storage for projects, users, sessions, events and heatmap aggregates.

    Implementations raise :class:`~flask_heat_collector.errors.StorageUnavailable`
    when the database cannot be reached. A batch's key is looked up on every ingest (no cache, so a
    rotation holds at once in every process): :class:`~flask_heat_collector.errors.UnknownProject`
    when no project has it (the caller may :meth:`ensure_project` and ingest again),
    :class:`~flask_heat_collector.errors.RetiredProjectKey` when it was rotated away.
    """

    rage_rule: RageRule  # what settling counts as a rage burst (set from the app's config)
    signal_rules: SignalRules  # the thresholds of the other signals (set from the app's config)
    traffic_rules: TrafficRules  # the behaviour rules of the traffic classes (set from the app's config)

    @abstractmethod
    def migrate(self) -> Migration:
        """Create missing tables/collections and indexes; move data of an older layout forward."""

    @abstractmethod
    def dispose(self) -> None:
        """Close pooled connections (the next call reconnects)."""

    @abstractmethod
    def ingest(self, batch: Batch) -> IngestResult:
        """Upsert project, user and session; insert new events and their aggregate pieces."""

    @abstractmethod
    def read(self, fn: Callable[[Reader], T]) -> T:
        """``fn(reader)`` over one snapshot (run again on a fresh connection if a pooled one was dead)."""

    @abstractmethod
    def compact(
        self,
        max_keys: int = 1000,
        *,
        keys: list[AggregateKeyDay] | None = None,
        report_keys: list[ReportKeyDay] | None = None,
        roll: bool = True,
        full: bool = True,
    ) -> int:
        """Merge the aggregate pieces of up to ``max_keys`` keys into one each (not ``full``: pieces
        small beside a key-day's biggest are merged apart from it, aggregates.compaction), then
        (``roll``) roll the merged day pieces of up to ``max_keys`` key-months of finished months into
        month pieces, then merge the report pieces of up to ``max_keys`` report key-days; the keys
        merged. With ``keys`` or ``report_keys``, merge the pieces of those keys only (their fresh
        pieces, never in full)."""

    @abstractmethod
    def mark_rage(self, project_id: str | None) -> None:
        """Mark every session with a click pending (of one project when given), so that settling decides
        their rage clicks again (after the rule changed)."""

    @abstractmethod
    def settle_rage(self, project_id: str | None, limit: int | None = None, *, idle_ms: int | None = None) -> int:
        """Settle the rage clicks of the pending sessions (of one project, or of any; at most ``limit``):
        recompute each one's bursts from all its clicks and store the difference. The sessions settled.

        With ``idle_ms`` (a worker's background settle, any project): only sessions marked at least
        that long ago, the longest idle first, skipping those another settle holds; so a live
        session is settled once it pauses, not after each of its batches."""

    @abstractmethod
    def rebuild_aggregates(self) -> int:
        """Recompute every aggregate from the stored events (after a bulk load); the events read."""

    @abstractmethod
    def classify_sessions(
        self, project_id: str | None, *, session_ids: list[str] | None = None, since: int | None = None
    ) -> ClassifyCounts:
        """Decide the traffic class of sessions again (traffic.py, with ``traffic_rules``): those of
        ``session_ids``, else every session of the project (of every project for ``None``) seen at or
        after ``since``. A session whose class changes has what it added moved: the aggregates and report
        pieces of every key-day its rows touched are computed again from the human sessions' rows,
        as erase computes them, so every answer is exact afterwards."""

    @abstractmethod
    def list_sessions(self, query: SessionQuery) -> list[SessionSummary]:
        """Sessions ordered by start, each with its stored event count, in one query, and its settled
        signal counts in one more."""

    @abstractmethod
    def erase(self, erasure: Erasure, *, dry_run: bool = False) -> ErasedCounts:
        """Delete what ``erasure`` names and correct every aggregate and counter, so that every
        query answers as if it had never been stored; then look again (``verified``).

        With ``dry_run`` only count. Erasing what is gone already answers zero counts.
        """

    @abstractmethod
    def user_data(self, project_id: str, user: str) -> UserData:
        """The users ``user`` names (SDK/JWT id or internal id) and their sessions."""

    @abstractmethod
    def user_events(
        self, project_id: str, data: UserData, after: tuple[int, int, str] | None, limit: int
    ) -> list[EventRow]:
        """Up to ``limit`` stored events of the user after ``(ts, seq, event_id)``, in that (unique) order."""

    @abstractmethod
    def purge(
        self,
        raw_before: int | None,
        aggregates_before_day: int | None,
        *,
        dry_run: bool,
        chunk: int = 5000,
        erased_before: int | None = None,
    ) -> PurgeCounts:
        """Retention in every project: delete events wholly before ``raw_before`` (unix ms, a UTC
        midnight; a move whose last point is later is kept), then the sessions started before it
        with no event left and the users created before it with no session left (not the tombstones
        of erased users: those go once erased before ``erased_before``, counted as users); then the
        aggregate pieces of days before ``aggregates_before_day``. ``None`` keeps that tier.

        Aggregates are not recomputed: heatmaps of whole old days stay. Each chunk of at most
        ``chunk`` items is its own short transaction. With ``dry_run`` only count.
        """

    @abstractmethod
    def external_user_ids(self, project_id: str, user_ids: list[str]) -> dict[str, str]:
        """The SDK/JWT id of each internal user id given (those that exist)."""

    @abstractmethod
    def find_sessions(self, session_id: str, project_id: str | None, limit: int = 51) -> list[Session]:
        """The sessions with this id: in the project when given, else in every project (earliest first)."""

    def get_session(self, session_id: str, project_id: str | None) -> Session | None:
        """The earliest session with this id (within a project when given)."""
        found = self.find_sessions(session_id, project_id, 1)
        return found[0] if found else None

    @abstractmethod
    def create_project(self, key: str, name: str) -> Project:
        """Register a project key; :class:`RetiredProjectKey` for a retired one."""

    @abstractmethod
    def ensure_project(self, key: str) -> str:
        """The id of the project with ``key``, made (named "Default") when there is none.

        :class:`RetiredProjectKey` when the key was rotated away: the check runs after the insert,
        so a rotation committed meanwhile is seen (the unique key serialises the two).
        """

    @abstractmethod
    def list_projects(self) -> list[Project]:
        """All projects, oldest first."""

    @abstractmethod
    def rotate_project_key(self, project_id: str, new_key: str) -> Project | None:
        """Replace a project's key, retiring the old one; ``None`` when the project does not exist.

        :class:`RetiredProjectKey` when ``new_key`` is retired, ``ValueError`` when another project has it.
        """
