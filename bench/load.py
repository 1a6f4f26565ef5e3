"""Ingest load with wrk (bench/ingest.lua) and the timing of the query APIs."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import BENCH, fill, run
from .servers import Server

EVENTS_PER_BATCH = 20  # bench/ingest.lua
# The queries timed again on ours at scale_rows events.
SCALED = ("heatmap (default: clicks)", "events page (path, offset 5,000)", "sessions list (limit 50)")


def wrk(server: Server, seconds: float, connections: int, key: str) -> dict[str, Any]:
    """One wrk run of SDK-shaped batches against ``server``: the counters bench/ingest.lua prints."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += [
        "-s",
        str(BENCH / "ingest.lua"),
        server.base + "/ingest",
        "--",
        uuid.uuid4().hex[:10],
        key,
        str(connections),
    ]
    out = run(cmd)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    counters: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    return counters


def events_per_s(wrk_out: dict[str, Any]) -> float:
    """Events of the batches of one wrk run answered 2xx, per second."""
    return float((wrk_out["requests"] - wrk_out["non2xx"]) * EVENTS_PER_BATCH / (wrk_out["duration_us"] / 1e6))


@dataclass
class LoadResult:
    """The wrk runs of one server, added up."""

    requests: int = 0
    seconds: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def add(self, wrk: dict[str, Any]) -> None:
        self.requests += wrk["requests"]
        self.seconds += wrk["duration_us"] / 1e6
        self.non2xx += wrk["non2xx"]
        self.socket_errors += wrk["connect"] + wrk["read"] + wrk["write"] + wrk["timeout"]
        self.p50_ms.append(wrk["p50_us"] / 1000)
        self.p99_ms.append(wrk["p99_us"] / 1000)

    @property
    def events_per_s(self) -> float:
        """Events of the batches answered 2xx, per second."""
        return (self.requests - self.non2xx) * EVENTS_PER_BATCH / self.seconds if self.seconds else 0.0


def query_paths() -> dict[str, str]:
    """The query API calls timed, by label, over fill.py's project and path."""
    p = fill.PROJECT_ID
    return {
        "heatmap (type=all)": f"/api/projects/{p}/heatmap?path={fill.PATH}&type=all",
        "heatmap (default: clicks)": f"/api/projects/{p}/heatmap?path={fill.PATH}",
        "events page (limit 200)": f"/api/projects/{p}/events?path={fill.PATH}&limit=200",
        "events page (path, offset 5,000)": f"/api/projects/{p}/events?path={fill.PATH}&limit=200&offset=5000",
        "sessions list (limit 50)": f"/api/projects/{p}/sessions?limit=50",
    }


def time_get(url: str, runs: int) -> tuple[list[float], dict[str, Any]]:
    """Milliseconds of ``runs`` GETs (after one warm-up, skipped when a single call exceeds 2 s)."""
    samples: list[float] = []
    body: dict[str, Any] = {}
    first = True
    while len(samples) < runs:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as response:
            raw = response.read()
            status = response.status
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        body = json.loads(raw)
        if first and elapsed < 2000:
            first = False
            continue
        first = False
        samples.append(round(elapsed, 1))
    return samples, body


def compare(bodies: dict[str, dict[str, Any]], paths: dict[str, str]) -> dict[str, str]:
    """Same data in both schemas, so both servers must give the same answers."""
    checks = {}
    for label in paths:
        ours, orig = bodies[f"{label}/ours"], bodies[f"{label}/original"]
        if label.startswith("heatmap"):
            # The cells differ on purpose (SPEC 4: square cells, one screen width per map); the rows
            # counted must not, and every row ours counts is plotted or reported as ignored.
            m, n = ours["meta"], orig["meta"]
            plotted = sum(p["value"] for p in ours["points"])
            same = m["total"] == n["total"] and plotted + m["ignored"] == m["total"]
            checks[label] = f"same totals ({m['total']:,} rows; ours plots {plotted:,})" if same else "DIFFERENT"
        elif label.startswith("events"):
            a = [(e["eventId"], e["ts"]) for e in ours["events"]]
            b = [(e["id"], e["ts"]) for e in orig["events"]]
            checks[label] = f"same {len(a)} events" if a == b else "DIFFERENT"
        else:
            keys = ("sessionId", "startedAt", "eventCount")
            a = [tuple(s[k] for k in keys) for s in ours["sessions"]]
            b = [tuple(s[k] for k in keys) for s in orig["sessions"]]
            checks[label] = f"same {len(a)} sessions and event counts" if a == b else "DIFFERENT"
    return checks
