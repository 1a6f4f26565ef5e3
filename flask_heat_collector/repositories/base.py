"""The storage contract: the Repository ABC and the plain records it speaks in."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple


class EventRow(NamedTuple):
    """One stored event row (a move point is a row of its own); fields in column order."""

    event_id: str
    point_index: int
    session_id: str
    type: str
    ts: int
    path: str
    selector: str | None
    x: int | None
    y: int | None
    scroll_depth: int | None
    viewport_w: int
    viewport_h: int
    bucket_w: int
    bucket_h: int
    meta_json: str
    data_json: str | None


@dataclass(frozen=True)
class SessionRow:
    """The session fields written when a batch arrives."""

    id: str
    started_at: int
    last_seen_at: int
    first_path: str
    user_agent: str | None
    device_json: str | None
    ip_hash: str | None


@dataclass(frozen=True)
class Batch:
    """Everything one ingest request stores, ready for the database."""

    project_key: str
    external_user_id: str | None
    user_traits_json: str | None
    session: SessionRow
    events: list[EventRow]
    create_project: bool = True


@dataclass(frozen=True)
class IngestResult:
    project_id: str
    accepted: int
    duplicates: int


@dataclass(frozen=True)
class EventFilter:
    """Rows of one project, optionally narrowed by path, time and types (``None`` = all types)."""

    project_id: str
    path: str | None = None
    ts_from: int | None = None
    ts_to: int | None = None
    types: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Cell:
    cx: int
    cy: int
    count: int


@dataclass(frozen=True)
class HeatmapFrame:
    """What the heatmap needs before binning: the most common bucket and the largest y."""

    bucket: tuple[int, int] | None
    max_y: int | None


@dataclass(frozen=True)
class HeatmapSummary:
    """Rows per type and, when there are rows, the frame: what the heatmap needs before binning."""

    by_type: dict[str, int]
    frame: HeatmapFrame | None


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
class Session:
    id: str
    project_id: str
    user_id: str | None
    started_at: int
    last_seen_at: int
    first_path: str
    user_agent: str | None
    device_json: str | None
    ip_hash: str | None


@dataclass(frozen=True)
class SessionSummary:
    session_id: str
    user_id: str | None
    started_at: int
    last_seen_at: int
    first_path: str
    event_count: int


@dataclass(frozen=True)
class SessionQuery:
    project_id: str
    started_from: int | None = None
    last_seen_to: int | None = None
    user_id: str | None = None
    first_path: str | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True)
class Project:
    id: str
    key: str
    name: str
    created_at: int


class Repository(ABC):
    """Storage for projects, users, sessions and events.

    Implementations raise :class:`~flask_heat_collector.errors.StorageUnavailable`
    when the database cannot be reached and
    :class:`~flask_heat_collector.errors.UnknownProject` when a batch names an
    unknown key that may not be created.
    """

    @abstractmethod
    def migrate(self) -> None:
        """Create missing tables/collections and indexes; keep existing data."""

    @abstractmethod
    def dispose(self) -> None:
        """Close pooled connections (the next call reconnects)."""

    @abstractmethod
    def ingest(self, batch: Batch) -> IngestResult:
        """Upsert project, user and session and insert new event rows, atomically."""

    @abstractmethod
    def count_by_type(self, flt: EventFilter) -> dict[str, int]:
        """Rows per event type matching ``flt``."""

    @abstractmethod
    def heatmap_frame(self, flt: EventFilter) -> HeatmapFrame:
        """The most common viewport bucket and the largest y of non-scroll rows."""

    def heatmap_summary(self, flt: EventFilter) -> HeatmapSummary:
        """``count_by_type`` and ``heatmap_frame`` together; backends may answer both in one pass."""
        by_type = self.count_by_type(flt)
        return HeatmapSummary(by_type=by_type, frame=self.heatmap_frame(flt) if by_type else None)

    @abstractmethod
    def heatmap_cells(self, flt: EventFilter, width: int, height: int, resolution: int) -> list[Cell]:
        """Counts of non-scroll rows with x/y, binned into clamped ``resolution``² cells."""

    @abstractmethod
    def scroll_depths(self, flt: EventFilter) -> list[tuple[int, int]]:
        """``(scroll_depth, count)`` of scroll rows that have a depth."""

    @abstractmethod
    def list_events(self, flt: EventFilter, limit: int, offset: int) -> list[Event]:
        """Rows ordered by ts."""

    @abstractmethod
    def list_sessions(self, query: SessionQuery) -> list[SessionSummary]:
        """Sessions ordered by start, each with its event count, in one query."""

    @abstractmethod
    def get_session(self, session_id: str, project_id: str | None) -> Session | None:
        """One session by id (within a project when given)."""

    @abstractmethod
    def session_events(self, session: Session, types: tuple[str, ...] | None, limit: int, offset: int) -> list[Event]:
        """Rows of one session ordered by ts."""

    @abstractmethod
    def create_project(self, key: str, name: str) -> Project:
        """Register a project key."""

    @abstractmethod
    def list_projects(self) -> list[Project]:
        """All projects, oldest first."""

    @abstractmethod
    def rotate_project_key(self, project_id: str, new_key: str) -> Project | None:
        """Replace a project's key; ``None`` when the project does not exist."""
