"""The viewer reports at scale, filled the way users fill them: click-heavy SDK batches sent through
``POST /ingest`` over HTTP by concurrent clients, to ours under gunicorn.

``python -m bench.reports --dialect sqlite --events 1000000 --growth 5`` fills the first size, times
every report over the 30 days (median of ``--runs``), fills up to ``events x growth``, times them
again, and prints each report's time (right after each fill, then after ``flask heat compact``) as a
multiple of the click heatmap's in the same run and its
growth. The traffic: sessions of 50 events (two batches of 25) on 40 paths, three screen widths;
clicks on ~300 selectors with a skewed popularity, scrolls, pageviews; 5 % of sessions rage-click
(bursts of 4 within 600 ms); 2 % of clicks are followed by a custom ``error`` event (error clicks);
spread over 30 days. The signal reports (dead and error click maps, sessions with a dead click), a
page group over every path and compare (the range's two halves) are timed too. Results go to
bench/results/reports-<dialect>.md, with each answer's growth in bytes beside its time's growth;
``--keep`` keeps the filled database for EXPLAIN and profiles.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from . import BENCH, log
from .load import time_get
from .servers import Config, Databases, Server, compact

DAY = 86_400_000
DAYS = 30
PATHS = [f"/p/{i}" for i in range(40)]
SELECTORS = [f"#el-{i}" for i in range(300)]
WIDTHS = [(1280, 800), (390, 844), (1440, 900)]
EVENTS_PER_SESSION = 50
BATCH_EVENTS = 25
KEY = "bench-reports"


def _selector(rng: random.Random) -> str:
    """Skewed popularity: a few elements get most clicks (Zipf-like)."""
    return SELECTORS[min(len(SELECTORS) - 1, int(rng.paretovariate(1.1)) - 1)]


def session_bodies(index: int, start: int) -> list[bytes]:
    """The two batches of one session (deterministic per index)."""
    rng = random.Random(index)
    w, h = WIDTHS[index % len(WIDTHS)]
    sid = f"bs-{index}"
    ts = start + rng.randrange(0, DAYS * DAY - 3_600_000)
    path = rng.choice(PATHS)
    rage = rng.random() < 0.05
    events: list[dict[str, Any]] = []
    for n in range(EVENTS_PER_SESSION):
        ts += rng.choice([200, 800, 2_000, 5_000])
        kind = rng.random()
        common = {"eventId": f"{sid}-{n}", "sessionId": sid, "ts": ts, "path": path, "viewport": {"w": w, "h": h}}
        common["device"] = {"ua": "bench", "platform": "Linux", "language": "en"}
        if rage and n == 10:
            x, y = rng.randrange(0, w), rng.randrange(0, 1500)
            for k in range(4):
                events.append(
                    {**common, "eventId": f"{sid}-r{k}", "ts": ts + 150 * k, "type": "click", "x": x + k, "y": y}
                )
            continue
        if kind < 0.6:
            events.append(
                {
                    **common,
                    "type": "click",
                    "x": rng.randrange(0, w),
                    "y": rng.randrange(0, 2500),
                    "selector": _selector(rng),
                }
            )
            if rng.random() < 0.02:  # the site reports an error right after the click: an error click
                events.append({**common, "eventId": f"{sid}-e{n}", "ts": ts + 300, "type": "custom", "name": "error"})
        elif kind < 0.85:
            pct = rng.randrange(0, 101)
            events.append({**common, "type": "scroll", "scrollY": pct * 20, "scrollDepthPct": pct})
        else:
            path = rng.choice(PATHS)
            events.append({**common, "path": path, "type": "pageview", "to": path})
    bodies = []
    for first in range(0, len(events), BATCH_EVENTS):
        chunk = events[first : first + BATCH_EVENTS]
        body = {"session": {"id": sid, "startedAt": chunk[0]["ts"], "lastSeenAt": chunk[-1]["ts"]}, "events": chunk}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


def post_sessions(server: Server, first: int, count: int, start: int, clients: int) -> tuple[float, int]:
    """Send sessions ``first..first+count`` over ``clients`` keep-alive connections: (seconds, non-2xx)."""
    lock = threading.Lock()
    next_index = [first]
    bad = [0]

    def work() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        headers = {"Content-Type": "application/json", "X-Project-Key": KEY}
        while True:
            with lock:
                index = next_index[0]
                next_index[0] += 1
            if index >= first + count:
                break
            for body in session_bodies(index, start):
                for attempt in range(5):
                    try:
                        conn.request("POST", "/ingest", body, headers)
                        response = conn.getresponse()
                        response.read()
                        if response.status // 100 != 2:
                            with lock:
                                bad[0] += 1
                        break
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                        if attempt == 4:
                            raise
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, bad[0]


def queries(project: str, start: int) -> dict[str, str]:
    span = f"from={start}&to={start + DAYS * DAY}"
    path = f"path={PATHS[0]}"
    base = f"/api/projects/{project}"
    middle = start + DAYS * DAY // 2
    sides = f"a={quote(f'from={start};to={middle - 1}')}&b={quote(f'from={middle};to={start + DAYS * DAY}')}"
    return {
        "heatmap, clicks (for scale)": f"{base}/heatmap?{path}&{span}",
        "heatmap type=rageclick": f"{base}/heatmap?{path}&{span}&type=rageclick",
        "elements": f"{base}/elements?{path}&{span}",
        "elements type=rageclick": f"{base}/elements?{path}&{span}&type=rageclick",
        "paths": f"{base}/paths?{span}",
        "scrollmap": f"{base}/scrollmap?{path}&{span}",
        "heatmap type=deadclick": f"{base}/heatmap?{path}&{span}&type=deadclick",
        "heatmap type=errorclick": f"{base}/heatmap?{path}&{span}&type=errorclick",
        "sessions signal=dead": f"{base}/sessions?{span}&signal=dead",
        "heatmap group=/p/* (every path)": f"{base}/heatmap?group={quote('/p/*')}&{span}",
        "elements group=/p/* (every path)": f"{base}/elements?group={quote('/p/*')}&{span}",
        "compare elements, two halves": f"{base}/compare?report=elements&{path}&{sides}",
        "compare heatmap, two halves": f"{base}/compare?report=heatmap&{path}&{sides}",
    }


def time_all(
    server: Server, project: str, start: int, runs: int, sizes: dict[str, int] | None = None
) -> dict[str, float]:
    """Each query's median ms; with ``sizes``, also each answer's size (bytes of its compact JSON)."""
    found = {}
    for label, url in queries(project, start).items():
        samples, body = time_get(server.base + url, runs)
        found[label] = statistics.median(samples)
        if sizes is not None:
            sizes[label] = len(json.dumps(body, separators=(",", ":")))
    return found


def project_id(server: Server) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = session_bodies(10**9, 0)[0]
    conn.request("POST", "/ingest", body, {"Content-Type": "application/json", "X-Project-Key": KEY})
    answer = json.loads(conn.getresponse().read())
    conn.close()
    return str(answer["projectId"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialect", default="sqlite", choices=["sqlite", "postgresql", "mysql", "mongo"])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--growth", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the filled database (its URI is logged)")
    opts = parser.parse_args(argv)
    start = (int(time.time() * 1000) // DAY - DAYS - 1) * DAY
    work = Path(tempfile.mkdtemp(prefix="heat-bench-reports-"))
    databases = Databases(work)
    rows: list[Row] = []
    try:
        uri, native = databases.create(opts.dialect, "reports")
        server = Server(Config("ours", opts.workers, "sync"), opts.dialect, uri, native, work)
        try:
            project = project_id(server)
            done = 0
            for size in (opts.events, opts.events * opts.growth):
                sessions = size // EVENTS_PER_SESSION - done
                log(f"{opts.dialect}: {sessions:,} sessions through POST /ingest ({opts.clients} clients)")
                seconds, bad = post_sessions(server, done, sessions, start, opts.clients)
                done += sessions
                log(f"  {sessions * EVENTS_PER_SESSION / seconds:,.0f} events/s, {bad} non-2xx")
                began = time.perf_counter()  # settles what the fill left pending (the others then do not)
                urllib.request.urlopen(server.base + queries(project, start)["paths"], timeout=3600).read()
                first = (time.perf_counter() - began) * 1000
                log(f"  the first report after the fill (paths): {first:,.1f} ms")
                fresh = time_all(server, project, start, opts.runs)
                for label, ms in fresh.items():
                    log(f"  right after the fill, {label}: {ms:,.1f} ms")
                began = time.perf_counter()
                log(f"  {compact(uri)} in {time.perf_counter() - began:,.0f} s")
                sizes: dict[str, int] = {}
                merged = time_all(server, project, start, opts.runs, sizes)
                for label, ms in merged.items():
                    log(f"  after flask heat compact, {label}: {ms:,.1f} ms ({sizes[label]:,} bytes)")
                rows.append(Row(done * EVENTS_PER_SESSION, fresh, merged, seconds, bad, first, sizes))
        finally:
            server.stop()
    finally:
        if opts.keep:
            log(f"kept: {uri} (project {project}, start {start})")
        else:
            databases.drop_all()
    out = BENCH / "results" / f"reports-{opts.dialect}.md"
    out.write_text(report(opts, rows))
    print(out.read_text())


class Row(NamedTuple):
    """One fill stage: events stored, timings right after the fill and after compaction, the fill."""

    events: int
    fresh: dict[str, float]
    merged: dict[str, float]
    seconds: float
    bad: int
    first: float  # ms of the first report after the fill
    sizes: dict[str, int]  # bytes of each answer (compact JSON)


def _table(title: str, first: Row, last: Row, fresh: bool) -> list[str]:
    small, big = first.events, last.events
    a, b = (first.fresh, last.fresh) if fresh else (first.merged, last.merged)
    lines = [
        f"## {title}",
        "",
        f"| query (one path) | {small:,} events | x click heatmap | {big:,} events | x click heatmap | growth "
        "| answer growth (bytes) |",
        "|---|---|---|---|---|---|---|",
    ]
    scale_a, scale_b = a["heatmap, clicks (for scale)"], b["heatmap, clicks (for scale)"]
    for label in a:
        answer = last.sizes[label] / first.sizes[label] if first.sizes.get(label) else 0
        lines.append(
            f"| {label} | {a[label]:,.1f} ms | {a[label] / scale_a:.2f} | {b[label]:,.1f} ms | "
            f"{b[label] / scale_b:.2f} | x{b[label] / a[label]:.2f} | x{answer:.2f} |"
        )
    return [*lines, ""]


def report(opts: argparse.Namespace, rows: list[Row]) -> str:
    first, last = rows[0], rows[-1]
    lines = [
        f"# Reports over {DAYS} days, {opts.dialect}, filled through POST /ingest",
        "",
        f"gunicorn -w {opts.workers} (sync), {opts.clients} clients; median of {opts.runs} requests each.",
        "",
        *_table("Right after the fill (no pause)", first, last, fresh=True),
        *_table("After `flask heat compact`", first, last, fresh=False),
    ]
    lines += [
        "",
        "The first report after each fill (paths; it settles the signals the fill left pending): "
        + "; ".join(f"{row.events:,} events {row.first:,.1f} ms" for row in rows)
        + ".",
    ]
    steps, before = [], 0
    for n, _, _, seconds, bad, _, _ in rows:
        steps.append(f"{n - before:,} events at {(n - before) / seconds if seconds else 0:,.0f}/s, {bad} non-2xx")
        before = n
    lines += ["", "Ingest through HTTP: " + "; ".join(steps) + "."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
